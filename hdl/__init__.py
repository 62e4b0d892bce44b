"""npuc.hdl."""
