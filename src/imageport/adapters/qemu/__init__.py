"""QEMU virtual machines for the boot test: the accelerator probe (:mod:`.accel`), the
firmware files (:mod:`.firmware`), a minimal QMP client (:mod:`.qmp`), the captured consoles
(:mod:`.capture`) and the runner that implements :class:`~imageport.service.ports.BootRunner`
(:mod:`.boot_runner`)."""
