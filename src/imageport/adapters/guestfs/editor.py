"""Apply a configuration plan inside libguestfs' appliance, driven through ``guestfish``.

The guest's filesystems are mounted by the appliance's own kernel in its own virtual machine
(virt-v2v's and virt-customize's way); the host kernel never mounts them, and no path named
inside the guest is ever opened on the host. One appliance is launched per plan
(``guestfish --listen --rw -a DISK``) and driven by ``guestfish --remote`` commands, each a
separate short process with its arguments passed as a list (no shell, no quoting). The guest's
filesystems are mounted where the checker read them (:mod:`imageport.configure.mounts`), not
where the appliance's own inspection would: a mount that fails stops everything.

All checks come before any write: each operation's file is looked at (``lstatns``; its
SHA-256 with ``checksum``) and must be what the plan was made from, or nothing is written.
A query that may fail without meaning an error is prefixed with ``-`` (guestfish's remote
server exits on the first error otherwise); the server reports errors on its own stderr, so a
failed query shows to the client only as an empty answer. The appliance is always shut
down, and the server killed if it does not go.

Under a hypervisor without usable KVM (as here) the appliance runs on TCG
(``LIBGUESTFS_BACKEND_SETTINGS=force_tcg``): about 30-45 s to launch.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from imageport.adapters.qemu.accel import usable_accelerator
from imageport.configure.edits import FileOp, NotEditableError, OpKind, guest_path, sha256
from imageport.configure.mounts import ApplianceMount
from imageport.service.ports import EditRun, GuestEditError

#: Longest the appliance may take to launch and mount the guest.
LAUNCH_TIMEOUT = 600.0
#: Longest one remote command may take (an upload of a 256 MiB initrd included).
COMMAND_TIMEOUT = 300.0
#: The watchdog's script: a line from us means all went well; end of file, that we are gone.
_WATCHDOG = 'read -r _ || kill -15 "-$1" 2>/dev/null'
_PID = re.compile(rb"GUESTFISH_PID=(\d{1,10})")


def _environment(accelerator: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIBGUESTFS_", "GUESTFISH_"))}
    env["LIBGUESTFS_BACKEND"] = "direct"
    if accelerator != "kvm":
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


class GuestfishEditor:
    """The :class:`~imageport.service.ports.GuestEditor` on libguestfs' ``guestfish``."""

    def __init__(self, accelerator: str = "tcg", guestfish: str = "guestfish") -> None:
        self._accelerator = accelerator
        self._guestfish = guestfish

    def accelerator(self) -> str:
        """The accelerator the appliance runs with (``auto``, the servers' and boot tests'
        setting, decided by their probe at the first edit)."""
        if self._accelerator == "auto":
            self._accelerator = usable_accelerator("qemu-system-x86_64")
        return self._accelerator

    def ready(self) -> None:
        if shutil.which(self._guestfish) is None:
            raise GuestEditError(
                "guestfish is not installed: install the Debian package libguestfs-tools "
                "(scripts/install does)"
            )

    def apply(
        self, disk: Path, mounts: Sequence[ApplianceMount], operations: Sequence[FileOp]
    ) -> EditRun:
        _refuse_unsafe_paths(mounts, operations)
        self.ready()
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="imageport-edit-") as tmp:
            session = _Session(self._guestfish, _environment(self.accelerator()), Path(tmp))
            session.launch(disk)
            try:
                session.mount(mounts)
                launched = time.monotonic() - started
                for op in operations:
                    session.verify(op)
                written = sum(session.perform(op) for op in operations)
                session.close()
            finally:
                session.kill()
        return EditRun(launched, time.monotonic() - started, written)


class _Session:
    """One listening guestfish and the remote commands sent to it."""

    def __init__(self, guestfish: str, env: dict[str, str], tmp: Path) -> None:
        self._guestfish = guestfish
        self._env = env
        self._tmp = tmp
        self._pid: int | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._group: int | None = None
        self._uploads = 0

    def launch(self, disk: Path) -> None:
        cmd = [self._guestfish, "--listen", "--rw", "--format=raw", "-a", str(disk)]
        # guestfish, the server it forks and the appliance's QEMU share one new process group;
        # a watchdog in a session of its own holds a pipe from us and ends that group when the
        # pipe closes without the word that all went well (kill -9 skips every finally, and the
        # server would run for ever)
        # the server keeps stderr open: a pipe would never reach its end, so stderr goes to a
        # file and only stdout (which the server closes) is a pipe
        errors = self._tmp / "launch.err"
        with errors.open("wb") as err:
            proc = subprocess.Popen(  # noqa: S603 - argument list built here, no shell
                cmd,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=self._env,
                start_new_session=True,
            )
            self._group = proc.pid
            self._watchdog = subprocess.Popen(  # noqa: S603 - fixed program and arguments
                ["/bin/sh", "-c", _WATCHDOG, "imageport-edit-watch", str(self._group)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                out, _ = proc.communicate(timeout=LAUNCH_TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                proc.wait()
                raise GuestEditError(
                    f"the editing appliance did not start within {LAUNCH_TIMEOUT:.0f} s"
                ) from exc
        found = _PID.search(out)
        if proc.returncode != 0 or found is None:
            raise GuestEditError(
                "the editing appliance could not start or find the guest's system: "
                + _last_error(errors.read_bytes()[-4096:])
            )
        self._pid = int(found.group(1))

    def _release_watchdog(self) -> None:
        """Tell the watchdog the server is gone (so it kills nothing) and let it end."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None or watchdog.stdin is None:
            return
        try:
            watchdog.stdin.write(b"done\n")
            watchdog.stdin.close()
        except OSError:
            pass
        try:
            watchdog.wait(timeout=10)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()

    def mount(self, mounts: Sequence[ApplianceMount]) -> None:
        """Start the appliance and mount the guest's filesystems where the plan read them."""
        self.run("run")
        for m in mounts:
            if m.mountpoint != "/" and not self._answer("is-dir", m.mountpoint):
                raise GuestEditError(
                    f"{m.mountpoint} is not a directory on the filesystem beneath it, so "
                    f"{m.device} cannot be mounted there; nothing was changed"
                )
            self.run("mount-options", m.options, m.device, m.mountpoint)

    def run(self, *args: str, tolerate: bool = False) -> tuple[str, str]:
        """Send one command; returns (stdout, stderr). With ``tolerate`` a failing command
        (prefixed ``-``) leaves the server running and its error in stderr."""
        assert self._pid is not None
        name = ("-" + args[0]) if tolerate else args[0]
        cmd = [self._guestfish, f"--remote={self._pid}", "--", name, *args[1:]]
        try:
            proc = subprocess.run(  # noqa: S603 - argument list built here, no shell
                cmd, capture_output=True, env=self._env, timeout=COMMAND_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise GuestEditError(f"the editing appliance did not answer {args[0]}") from exc
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace")
        if proc.returncode != 0 or (not tolerate and "libguestfs: error" in err):
            raise GuestEditError(f"{args[0]} failed in the editing appliance: {_last_error(err)}")
        return out, err

    def _answer(self, *args: str) -> bool:
        """A true/false query; False when it fails (the server reports errors on its own
        stderr, not to the remote client, so a failure shows only as no answer)."""
        return self.run(*args, tolerate=True)[0].strip() == "true"

    def _kind(self, path: str) -> str:
        """``absent``, ``file``, ``link`` or ``other``, as the appliance sees ``path``."""
        if self._answer("is-symlink", path):
            return "link"
        if not self._answer("exists", path):
            return "absent"
        return "file" if self._answer("is-file", path) else "other"

    def verify(self, op: FileOp) -> None:
        kind = self._kind(op.path)
        if op.expect == "absent":
            ok = kind == "absent"
        elif op.expect == "link":
            ok = kind == "link"
        else:
            ok = kind == "file" and self.run("checksum", "sha256", op.path)[0].strip() == op.expect
        if not ok:
            raise GuestEditError(
                f"{op.path} is not what the plan was made from (the appliance sees "
                f"{kind}); nothing was changed"
            )

    def perform(self, op: FileOp) -> int:
        parent = op.path.rsplit("/", 1)[0] or "/"
        if op.kind is OpKind.REMOVE:
            self.run("rm", op.path)
            return 1
        if op.kind is OpKind.SYMLINK:
            assert op.target is not None
            self.run("mkdir-p", parent)
            self.run("ln-sf", op.target, op.path)
            return 1
        assert op.data is not None
        self._uploads += 1
        local = self._tmp / f"upload-{self._uploads}"
        local.write_bytes(op.data)
        self.run("mkdir-p", parent)
        if op.expect == "link":
            self.run("rm", op.path)
        self.run("upload", str(local), op.path)
        local.unlink()
        if op.expect in ("absent", "link"):
            self.run("chmod", f"0{(op.mode or 0o644) & 0o7777:o}", op.path)
            self.run("chown", "0", "0", op.path)
        if self.run("checksum", "sha256", op.path)[0].strip() != sha256(op.data):
            raise GuestEditError(f"{op.path}: what the appliance wrote is not what was planned")
        return 1

    def close(self) -> None:
        """Flush, unmount and shut the appliance down cleanly."""
        self.run("sync")
        self.run("umount-all")
        self.run("shutdown")
        self.run("exit")
        self._pid = self._group = None
        self._release_watchdog()

    def kill(self) -> None:
        """Stop whatever of the server and its appliance still runs (after an error)."""
        if self._pid is not None:
            try:
                self.run("exit", tolerate=True)
            except GuestEditError:
                pass
            self._pid = None
        if self._group is not None:
            try:
                os.killpg(self._group, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._group = None
        self._release_watchdog()


def _refuse_unsafe_paths(mounts: Sequence[ApplianceMount], operations: Sequence[FileOp]) -> None:
    """Check every guest path again before anything starts: the daemon opens some paths (those
    under ``/dev``) in the appliance itself rather than in the guest, and a path is one
    argument that must stay one (no control characters)."""
    paths = [m.mountpoint for m in mounts if m.mountpoint != "/"] + [op.path for op in operations]
    for path in paths:
        try:
            guest_path(path)
        except NotEditableError as exc:
            raise GuestEditError(f"{exc}; nothing was changed") from exc


def _last_error(stderr: bytes | str) -> str:
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else "no message"
