"""The io layer: the HDF5 run file (layout, atomic writes), checkpoints for resuming, and reading runs back.
The layout: docs/run-file.md."""
