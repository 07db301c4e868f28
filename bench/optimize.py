"""Time ``imageport optimize`` on the Debian test image, and the share spent in the appliance.

The image is layout ``gpt-bios-esp-ext4-defects`` of ``tests/support/guest_images.py`` (3 GiB
raw, ~0.9 GB of data; built on first use): network rules and a static address with a pinned
MAC, a data disk in fstab, no serial console, no cloud-init datasource, no virtio drivers in
its initrd. Measured in the same run, each as a separate command:

* **optimize**: ``imageport optimize IN OUT -O qcow2 --json`` (check, plan, copy to raw, edit in
  the appliance, write qcow2, check the result); its JSON gives each phase's seconds and the
  appliance's launch and total time;
* **appliance floor**: ``guestfish --ro -a IN run`` — an appliance launched and shut down with
  nothing done: what any libguestfs edit pays here;
* **copy floor**: ``qemu-img convert -O qcow2 IN OUT`` — what writing the output alone costs.

Ratios: optimize / (appliance floor + copy floor) is the overhead of everything else (checks,
planning, the raw work copy, the edits themselves); appliance share = appliance time /
optimize time. Usage: ``bench/run --optimize [--reps N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from support import guest_images  # noqa: E402

IMAGEPORT = str(REPO / ".venv" / "bin" / "imageport")
ENV = {**os.environ, "LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=1800, check=False)
    seconds = time.monotonic() - t0
    if done.returncode not in (0, 1):  # optimize exits 1 when a rule still fails
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()[-2000:]}")
    return seconds, done.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="runs of each command (median)")
    args = ap.parse_args(argv)
    image = guest_images.guest_image("gpt-bios-esp-ext4-defects")
    rows: dict[str, list[float]] = {"optimize": [], "appliance": [], "launch": [], "floor": []}
    rows["copy"] = []
    with tempfile.TemporaryDirectory(prefix="ip-bench-opt-", dir=REPO / ".test-cache") as tmp:
        out = Path(tmp) / "out.qcow2"
        for _ in range(args.reps):
            out.unlink(missing_ok=True)
            seconds, text = timed([IMAGEPORT, "optimize", str(image), str(out), "--json"])
            doc = json.loads(text)
            rows["optimize"].append(seconds)
            rows["appliance"].append(doc["appliance"]["seconds"])
            rows["launch"].append(doc["appliance"]["launch_seconds"])
            changes = len(doc["configuration"]["changes"])
            rows["floor"].append(timed(["guestfish", "--ro", "-a", str(image), "run"])[0])
            out.unlink(missing_ok=True)
            rows["copy"].append(
                timed(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(image), str(out)])[0]
            )
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"image: {image.name} (3 GiB raw), {changes} changes, median of {args.reps} runs")
    print(f"  imageport optimize -O qcow2     {med['optimize']:7.1f} s")
    print(
        f"    in the appliance             {med['appliance']:7.1f} s (launch {med['launch']:.1f} s)"
    )
    print(f"  appliance floor (launch+stop)  {med['floor']:7.1f} s")
    print(f"  qemu-img convert -O qcow2      {med['copy']:7.1f} s")
    floor = med["floor"] + med["copy"]
    print(f"  ratio optimize / (appliance floor + convert) = {med['optimize'] / floor:.2f}")
    print(
        f"  appliance share of optimize                  = {med['appliance'] / med['optimize']:.0%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
