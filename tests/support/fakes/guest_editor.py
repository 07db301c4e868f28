"""A guest editor without the appliance (the ``GuestEditor`` port), for synthetic guests.

:class:`TreeEditor` knows the trees a synthetic guest was built from
(:func:`support.guest_fixtures.build_guest`); "applying" a plan builds that guest again with
the plan's operations applied to the trees (:func:`support.configure_trees.applied`, the real
``mkfs.ext4 -d``) and writes the result over the disk, so the job's next steps read a really
edited guest. Every operation's ``expect`` is checked against the disk first, as the appliance
does (imageport's own readers, on the host: only for the test's own trusted fixtures). The
real appliance is tested in tests/adapters/test_guestfish_editor.py and end to end.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from imageport.configure.edits import FileOp, sha256
from imageport.configure.mounts import ApplianceMount
from imageport.errors import ImageportError
from imageport.service.ports import EditRun, GuestEditError
from support import guest_fixtures as gf
from support.configure_trees import applied
from support.kernel_fixtures import open_guest


class TreeEditor:
    """Applies operations by rebuilding the synthetic guest ``name`` from ``root``/``boot``
    (see the module docstring); ``apply_nothing`` makes it an editor that checks and writes
    nothing. Records each call's operations; ``on_apply`` is called as it starts."""

    def __init__(
        self,
        name: str,
        root: gf.Tree,
        boot: gf.Tree | None = None,
        *,
        apply_nothing: bool = False,
        on_apply: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self.boot = boot
        self.apply_nothing = apply_nothing
        self.on_apply = on_apply
        self.applied: list[tuple[FileOp, ...]] = []

    def ready(self) -> None:
        return None

    def apply(
        self, disk: Path, mounts: Sequence[ApplianceMount], operations: Sequence[FileOp]
    ) -> EditRun:
        if self.on_apply is not None:
            self.on_apply()
        self.applied.append(tuple(operations))
        if self.apply_nothing:
            return EditRun(0.0, 0.0, 0)
        with open_guest(disk) as guest:
            for op in operations:
                try:
                    data = guest.files.read_file(op.path)
                    found = sha256(data)
                except ImageportError:
                    found = "absent"
                if op.expect != "link" and found != op.expect:
                    raise GuestEditError(f"{op.path} is not what the plan was made from")
        root, boot = applied(operations, self.root, self.boot)
        rebuilt = gf.build_guest(self.name + "-edited", root=root, boot=boot)
        if rebuilt.stat().st_size != disk.stat().st_size:
            raise GuestEditError("the rebuilt guest is not the disk's size")
        shutil.copyfile(rebuilt, disk)
        return EditRun(0.0, 0.0, len(operations))
