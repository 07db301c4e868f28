"""Servers: virtual machines made from a project's images, run on this machine, and what the
vendor's server API (ECS) and ``imageport server`` do with them.

A server row (:data:`~imageport.service.tables.servers`) is the truth the API shows; its
machine is run by the :class:`~imageport.service.ports.ServerHost` port (QEMU, in
:mod:`imageport.adapters.qemu`). Every operation that changes a machine (create, start, stop,
reboot, delete) is a job on the shared jobs table, run by the job queue like an import, so a
client polls it on ``GET /v1/{project_id}/jobs/{job_id}`` with the ECS job shape.

* :mod:`.statuses`: the vendor's status, derived from ``vm_state`` and ``task_state``.
* :mod:`.keypairs`: the project's SSH key pairs (Nova ``os-keypairs``), and the public key a
  server is given (:func:`.keypairs.public_key_of`).
* :mod:`.ssh_keys`: OpenSSH public keys read strictly, generated (Ed25519), fingerprinted.
* :mod:`.ecs_requests`: the server API's body and path-project checks, with ``Ecs.xxxx`` codes.
"""
