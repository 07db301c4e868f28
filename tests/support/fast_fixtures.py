"""Images for the fast-import tests: optimized and unoptimized guests as RAW (with bitmaps),
ZVHD2, and sparse RAW files with realistic virtual sizes that hold a small guest at the start.

The guests are :mod:`guest_fixtures` disks (128 MiB, GPT, built by the real tools and cached).
A large RAW is a sparse copy of one, extended with ``truncate`` and its GPT backup header moved
to the new end with ``sfdisk --relocate gpt-bak-std``, so a 200 GiB disk takes well under 1 MiB
of real space.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from imageport.fastimport.bitmap import build_bitmap, write_bitmap
from imageport.service.tools.convert import convert_image
from support import builders
from support import guest_fixtures as gf

GiB = 1 << 30
TiB = 1 << 40
#: An ``os_version`` of the list (fast import requires one).
OS_VERSION = "Debian GNU/Linux 12.0.0 64bit"
#: A persistent-net rule binding eth0 to a MAC address (IMG-NET-RULES: not optimized).
NET_RULE = (
    'SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", '
    'ATTR{address}=="52:54:00:12:34:56", NAME="eth0"\n'
)


def ready_raw() -> Path:
    """The cloud-ready (optimized) Debian guest: passes every rule, with fast import too."""
    return gf.synthetic_guest()


def unoptimized_raw() -> Path:
    """The cloud-ready guest plus a persistent-net rule: passes the normal check (IMG-NET-RULES
    is a warning there) but is not optimized for fast import."""
    return gf.build_guest(
        "fast-netrules",
        boot={"grub/grub.cfg": gf.READY_GRUB_CFG},
        root={**gf.CLOUD_READY, "etc/udev/rules.d/70-persistent-net.rules": NET_RULE},
    )


def ready_zvhd2() -> Path:
    """The optimized guest written as ZVHD2 by imageport's writer (cached)."""
    final = builders.cached(f"fast-{ready_raw().stem}.zvhd2")
    if not final.exists():
        tmp = final.with_name(final.name + f".{os.getpid()}.tmp.zvhd2")
        convert_image(ready_raw(), tmp, "zvhd2")
        os.replace(tmp, final)
    return final


def _run(*cmd: str) -> None:
    if shutil.which(cmd[0]) is None:
        raise RuntimeError(f"{cmd[0]} is not installed; run scripts/install --test")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")


def sparse_disk(guest: Path, out: Path, size: int) -> Path:
    """``guest`` copied sparsely to ``out`` and grown to ``size`` bytes (GPT fixed up)."""
    _run("cp", "--sparse=always", str(guest), str(out))
    os.truncate(out, size)
    _run("sfdisk", "-q", "--relocate", "gpt-bak-std", str(out))
    return out


def with_bitmap(raw: Path, mf: Path | None = None) -> Path:
    """Write the bitmap of ``raw`` (default: beside it, ``<base>.mf``); its path."""
    target = mf or raw.with_suffix(".mf")
    write_bitmap(build_bitmap(raw), target, not_over=raw)
    return target
