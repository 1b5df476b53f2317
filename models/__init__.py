"""The model format and its on-disk registry (versions, the live pointer, rollback), and the built-in model."""
