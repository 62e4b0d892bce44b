"""npuc.frontends.converters."""
