"""Implementations of :class:`imageport.service.ports.ObjectStore`.

Only :mod:`~imageport.adapters.objectstore.local` exists today: object data as files under the
data dir, records in the service database. A remote (S3-backed) store plugs in beside it.
"""
