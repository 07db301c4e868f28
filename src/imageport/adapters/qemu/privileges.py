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

import os
import pwd
import stat
import sys
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
    """The relay's file (:mod:`.metadata_relay`), when ``user`` (None: the service's) can
    read it."""
    script = Path(os.path.realpath(metadata_relay.__file__))
    if user is not None and not can_read(script, user):
        raise MachineError(
            f"the metadata relay {script} is not readable by user {user.name}, whom QEMU runs "
            "as: install imageport where that user can read it (not under /root)"
        )
    return script


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
