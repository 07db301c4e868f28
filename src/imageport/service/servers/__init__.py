"""Servers: virtual machines made from a project's images, run on this machine, and what the
vendor's server API (ECS) and ``imageport server`` do with them.

A server row (:data:`~imageport.service.tables.servers`) is the truth the API shows; its
machine is run by the :class:`~imageport.service.ports.ServerHost` port (QEMU, in
:mod:`imageport.adapters.qemu`). Every operation that changes a machine (create, start, stop,
reboot, delete) is a job on the shared jobs table, run by the job queue like an import, so a
client polls it on ``GET /v1/{project_id}/jobs/{job_id}`` with the ECS job shape.

* :mod:`.statuses`: the vendor's status, derived from ``vm_state`` and ``task_state``.
"""
