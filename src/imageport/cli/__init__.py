"""The ``imageport`` command: a thin layer over :mod:`imageport.service`."""
