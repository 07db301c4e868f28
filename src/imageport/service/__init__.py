"""Use cases: what the entry points (``api/``, ``cli/``, the server's start-up, the job queue)
call, and nothing below them.

Rooms by what users deal with: ``images/``, ``jobs/`` (import, export, copy, recovery),
``buckets/`` (the S3-compatible API's use cases), ``access/`` (authentication, tokens,
projects) and ``tools/`` (the local check and convert). Beside them: :mod:`.context` (the
:class:`~.context.Services` every use case receives), :mod:`.ports` (the interfaces of the
object store, the job queue, the image worker, with the records they exchange),
:mod:`.tables` (the database tables), :mod:`.health` (figures for the operations endpoints),
:mod:`.errors` and :mod:`.clock`.

The database is deliberately not behind a port: the use cases read and write the tables of
:mod:`.tables` themselves with SQLAlchemy Core, through the ``Engine`` in ``Services.db``. The
queries are the domain (a job is claimed by a conditional UPDATE, a quota is a SUM in the same
transaction as the write it guards), and SQLAlchemy Core already speaks both databases we run
on (SQLite, PostgreSQL); an interface in front of it would repeat every query. What is behind
a port is what has, or will have, other implementations or runs elsewhere: object storage, the
job queue, the processes that read image bytes. No module here imports ``imageport.adapters``:
:mod:`imageport.wiring` (and the CLI, for its local tools) picks the implementations.
"""
