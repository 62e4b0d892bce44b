"""npuc.frontends.nn."""
