"""Qt widgets of the viewer."""
