"""npuc.backends."""
