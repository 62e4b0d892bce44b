"""npuc.backends.rtl."""
