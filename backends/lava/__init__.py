"""npuc.backends.lava."""
