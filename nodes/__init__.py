"""One module per DRPO step; each node is a function ``state -> update``."""
