"""QEMU virtual machines.

Shared: the accelerator probe (:mod:`.accel`), the firmware files (:mod:`.firmware`), a minimal
QMP client (:mod:`.qmp`), the system disk as an overlay and its block graph (:mod:`.disks`).

The boot test: the captured consoles (:mod:`.capture`) and the runner that implements
:class:`~imageport.service.ports.BootRunner` (:mod:`.boot_runner`).

Servers: :class:`~.server_host.QemuServerHost` implements
:class:`~imageport.service.ports.ServerHost` (:mod:`.server_host`), with a server's folder
(:mod:`.machine_files`), its command line (:mod:`.machine_args`), its QEMU process
(:mod:`.qemu_process`), who QEMU runs as (:mod:`.privileges`), its metadata documents, service,
relay and config drive (:mod:`.metadata_tree`, :mod:`.metadata_service`,
:mod:`.metadata_relay`, :mod:`.config_drive`), its console log and sessions
(:mod:`.console_log`) and the thread that follows it while it runs (:mod:`.watcher`).
"""
