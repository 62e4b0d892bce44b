"""npuc.frontends."""
