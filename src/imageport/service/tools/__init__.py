"""The local tools behind ``imageport check`` and ``imageport convert``: no service state."""
