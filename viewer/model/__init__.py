"""Pure-Python model of the viewer (no Qt)."""
