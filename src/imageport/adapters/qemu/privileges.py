"""Who QEMU runs as, and what that user can run.

When the service runs as root, QEMU switches to ``server_user`` (``-runas``) once its files and
sockets are open, so a guest that breaks out of QEMU holds an unprivileged user and no file of
the service (the folders stay the service's, mode 0700). The metadata relay, which QEMU starts
after the switch, runs as that user too: its interpreter must be one that user can reach and
execute (:func:`relay_python`): the service's own interpreter often lives in a folder only root
can enter (``/root/.pyenv``), so the system's ``python3`` is the fallback; and it must be able
to read the relay's file (:func:`relay_script`). The relay needs nothing else from the file
system.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from imageport.adapters.qemu import metadata_relay
from imageport.service.ports import MachineError

#: Interpreters for the relay after the service's own, in order.
SYSTEM_PYTHONS = ("/usr/bin/python3",)


@dataclass(frozen=True, slots=True)
class RunAs:
    """The unprivileged user QEMU switches to."""

    name: str
    uid: int
    gid: int


def run_as(server_user: str) -> RunAs | None:
    """The user QEMU switches to: ``server_user`` when the service runs as root (and it is not
    root itself), else None (QEMU stays the service's user, which is unprivileged already)."""
    if os.geteuid() != 0 or server_user in ("", "root"):
        return None
    try:
        entry = pwd.getpwnam(server_user)
    except KeyError as exc:
        raise MachineError(
            f"server_user {server_user!r}, the user QEMU runs as, does not exist here"
        ) from exc
    if entry.pw_uid == 0:
        raise MachineError(f"server_user {server_user!r} is root: name an unprivileged user")
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)


def relay_python(user: RunAs | None) -> str:
    """An interpreter the relay can run as ``user`` (None: the service's own)."""
    own = os.path.realpath(sys.executable)
    if user is None:
        return own
    for candidate in (own, *SYSTEM_PYTHONS):
        real = os.path.realpath(candidate)
        if os.path.isfile(real) and can_execute(Path(real), user):
            return real
    raise MachineError(
        f"the metadata relay needs a python3 that user {user.name} can run; {own} is not "
        "reachable for it: apt-get install python3"
    )


def relay_script(user: RunAs | None) -> Path:
    """The relay's file (:mod:`.metadata_relay`), as a path ``user`` (None: the service's) can
    read: the installed module itself when it can, else a copy published in a folder of the
    service's user that anyone may enter (:func:`published_relay`): an installation in a
    folder only root can enter (a checkout under ``/root``, a 0700 temporary folder) still
    serves metadata."""
    script = Path(os.path.realpath(metadata_relay.__file__))
    if user is None or can_read(script, user):
        return script
    published = published_relay(script.read_bytes(), Path(tempfile.gettempdir()))
    if not can_read(published, user):
        raise MachineError(
            f"the metadata relay {published} is not readable by user {user.name}, whom QEMU "
            "runs as: make the temporary folder searchable for it, or install imageport where "
            "it can read the relay"
        )
    return published


#: Where the published relay goes in the temporary folder: named by the service's user and the
#: relay's digest, so a machine started with an older relay still finds its file after an
#: upgrade, and a restarted service finds the file its running machines name.
PUBLISHED = "imageport-relay-{uid}-{digest}"


def published_relay(code: bytes, tmp: Path) -> Path:
    """``code`` as ``metadata_relay.py`` in a folder of ``tmp`` owned by the service's user,
    mode 0755, the file 0444: nobody else can change it. A folder of that name that is not
    exactly that (another owner, a link, other bits, other content) is never used: the copy
    then goes to a fresh folder of a random name."""
    uid = os.geteuid()
    digest = hashlib.sha256(code).hexdigest()[:16]
    folder = tmp / PUBLISHED.format(uid=uid, digest=digest)
    script = folder / "metadata_relay.py"
    if _trusted(folder, script, code, uid):
        return script
    try:
        folder.mkdir(mode=0o755)
    except FileExistsError:
        folder = Path(tempfile.mkdtemp(prefix=f"imageport-relay-{uid}-", dir=tmp))
        script = folder / "metadata_relay.py"
    folder.chmod(0o755)  # the umask may have taken bits away
    descriptor = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
    with os.fdopen(descriptor, "wb") as out:
        out.write(code)
    os.chmod(script, 0o444)
    return script


def _trusted(folder: Path, script: Path, code: bytes, uid: int) -> bool:
    try:
        folder_stat = os.lstat(folder)
        script_stat = os.lstat(script)
    except FileNotFoundError:
        return False
    if not (stat.S_ISDIR(folder_stat.st_mode) and stat.S_ISREG(script_stat.st_mode)):
        return False
    if folder_stat.st_uid != uid or script_stat.st_uid != uid:
        return False
    if stat.S_IMODE(folder_stat.st_mode) != 0o755 or stat.S_IMODE(script_stat.st_mode) & 0o222:
        return False
    return script.read_bytes() == code


def can_read(path: Path, user: RunAs) -> bool:
    """Whether ``user`` may search every folder above ``path`` and read it."""
    return _reachable(path, user) and _allowed(path, user, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)


def _reachable(path: Path, user: RunAs) -> bool:
    return all(
        _allowed(folder, user, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
        for folder in reversed(path.parents)
    )


def can_execute(path: Path, user: RunAs) -> bool:
    """Whether ``user`` (its primary group only) may search every folder above ``path`` and
    execute it, by the permission bits."""
    return _reachable(path, user) and _allowed(path, user, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)


def _allowed(path: Path, user: RunAs, owner_bit: int, group_bit: int, other_bit: int) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_uid == user.uid:
        return bool(st.st_mode & owner_bit)
    if st.st_gid == user.gid:
        return bool(st.st_mode & group_bit)
    return bool(st.st_mode & other_bit)
