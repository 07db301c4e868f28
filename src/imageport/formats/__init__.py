"""Container formats: one module per format, and a registry that probes them all in one pass."""
