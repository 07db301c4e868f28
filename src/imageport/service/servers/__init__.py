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
* :mod:`.lifecycle`: every move of a server row between statuses; the host's news that a
  machine stopped by itself (:func:`~.lifecycle.machine_stopped`, the host's ``on_stopped``).
* :mod:`.flavors`: the fixed catalogue of sizes, and the one availability zone.
* :mod:`.network`: the one user-mode network (its fixed ids, the guest's address, MACs).
* :mod:`.create_request`: the create body, checked field by field (``Ecs.0005`` naming it).
* :mod:`.create`: creating servers (image, key pair, quotas; idempotent by
  ``X-Client-Token``).
* :mod:`.passwords`: ``adminPass``'s rules, and the memory it waits in (never stored).
* :mod:`.quotas`: servers per project, and the host's vCPU and memory budget.
* :mod:`.actions`: start, stop, reboot and delete in batches.
* :mod:`.job_types`, :mod:`.jobs`, :mod:`.operations`: the batch jobs, their sub-jobs, and what
  each sub-job does to one machine.
* :mod:`.machines`, :mod:`.metadata`: the spec a machine is made from, and the OpenStack
  metadata tree its guest reads (config drive and metadata service).
* :mod:`.queries`, :mod:`.records`: showing and listing servers, console output.
* :mod:`.recovery`: after a restart, jobs cut short fail and rows follow the machines.
"""
