"""Prove a configuration plan on a synthetic guest without the appliance: apply its file
operations to the fixture's trees and build the guest again with the real tools (mkfs.ext4 -d).

``build_guest(root=..., boot=...)`` puts ``boot`` on its own /boot partition, so an operation on
``/boot/...`` lands in the boot tree and everything else in the root tree.
"""

from __future__ import annotations

from collections.abc import Sequence

from imageport.configure.edits import FileOp, OpKind
from support.guest_fixtures import Symlink, Tree

Layer = dict[str, "str | bytes | Symlink | None"]


def applied(ops: Sequence[FileOp], root: Tree, boot: Tree | None = None) -> tuple[Layer, Layer]:
    """``(root, boot)`` trees with ``ops`` applied (a removal becomes ``None``, which removes
    the default entry too)."""
    new_root: Layer = dict(root)
    new_boot: Layer = dict(boot or {})
    for op in ops:
        tree, rel = (
            (new_boot, op.path[len("/boot/") :])
            if op.path.startswith("/boot/")
            else (new_root, op.path[1:])
        )
        if op.kind is OpKind.WRITE:
            assert op.data is not None
            tree[rel] = op.data
        elif op.kind is OpKind.REMOVE:
            tree[rel] = None
        else:
            assert op.target is not None
            tree[rel] = Symlink(op.target)
    return new_root, new_boot
