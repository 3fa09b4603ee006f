"""Storage: Chroma ICL store, aspect cache, call journal, checkpointers, run directories, seed data."""
