"""Helpers the tests share: image builders, fixtures, servers and clients for the tests.

Imported as ``support.<module>`` (``tests/`` is on the path: see ``pythonpath`` in
pyproject.toml)."""
