"""Time servers under TCG against the bare work measured in the same run.

Against a real ``imageport serve`` process (its own short temporary data dir, SQLite), with the
Debian 12 guest of ``tests/support/guest_images.py`` (layout ``gpt-bios-esp-ext4``, qcow2, built
on first use) uploaded and registered as an image, the CLI as client:

* **boot**: from ``imageport server create --wait`` to ``login:`` on the server's console and to
  the first SSH command that succeeds with the injected key (cloud-init took it from the
  metadata service), against ``imageport boot FILE --bios`` of the same file run alone (a bare
  QEMU of the same size to its login prompt, no network, no metadata) — ratio = server's time to
  ``login:`` / the bare boot's;
* **image from server**: ``imageport server image NAME --wait`` of the stopped server (copy,
  flatten, every rule, checksum, store) against ``qemu-img convert -O qcow2`` of the same
  overlay, run alone — ratio = job time / convert time.

Usage: ``bench/run --servers [--layout NAME]``. Two Debian boots under TCG: minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (HERE, REPO / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from service_import import IMAGEPORT, running_server  # noqa: E402 - after the path is set

from support import guest_images  # noqa: E402

SSH_SECONDS = 600.0


def cli(env: dict[str, str], *args: str, timeout: float = 900) -> str:
    done = subprocess.run(
        [IMAGEPORT, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"imageport {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def bare_boot(image: Path) -> float:
    t0 = time.monotonic()
    out = subprocess.run(
        [IMAGEPORT, "boot", str(image), "--bios", "--json", "--no-screenshot", "--timeout", "600"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    ).stdout
    wall = time.monotonic() - t0
    try:
        doc = json.loads(out)
        return float(doc["boots"][0]["seconds"])
    except (ValueError, KeyError, IndexError, TypeError):
        return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layout", default="gpt-bios-esp-ext4", choices=guest_images.LAYOUTS)
    args = ap.parse_args(argv)
    image = guest_images.guest_image(args.layout, "qcow2")
    work = Path(tempfile.mkdtemp(prefix="ip-bench-"))  # short: QEMU's sockets live in it
    try:
        with running_server(work) as server:
            env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEPORT_")}
            env.update(
                IMAGEPORT_ENDPOINT=server.ims_url,
                IMAGEPORT_S3_ENDPOINT=server.s3_url,
                IMAGEPORT_ACCESS_KEY=server.access_key,
                IMAGEPORT_SECRET_KEY=server.secret_key,
                IMAGEPORT_PROJECT_ID=server.project_id,
            )
            cli(env, "bucket", "create", "bench")
            cli(env, "upload", str(image), "bench/guest.qcow2")
            registered = json.loads(
                cli(
                    env,
                    "image",
                    "register",
                    "guest",
                    "bench:guest.qcow2",
                    "--min-disk",
                    "40",
                    "--os-version",
                    "Debian GNU/Linux 12.0.0 64bit",
                    "--wait",
                    "--json",
                )
            )
            image_id = registered.get("entities", {}).get("image_id") or registered["image_id"]
            key = work / "key"
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
            cli(env, "keypair", "create", "bench", "--public-key", f"{key}.pub")

            t0 = time.monotonic()
            created = json.loads(
                cli(
                    env,
                    "server",
                    "create",
                    "b1",
                    "--image",
                    image_id,
                    "--flavor",
                    "s1.large.1",
                    "--key-name",
                    "bench",
                    "--wait",
                    "--json",
                )
            )
            server_id = created[0]["id"]
            try:
                active = time.monotonic() - t0
                login = ssh = None
                while time.monotonic() - t0 < SSH_SECONDS and (ssh is None or login is None):
                    console = "" if login else cli(env, "server", "log", "b1", "--lines", "-1")
                    if "login:" in console:
                        login = time.monotonic() - t0
                    if ssh is None:
                        probe = subprocess.run(
                            [IMAGEPORT, "server", "ssh", "b1", "-i", str(key), "--", "true"],
                            env=env,
                            capture_output=True,
                            timeout=60,
                            check=False,
                        )
                        if probe.returncode == 0:
                            ssh = time.monotonic() - t0
                    time.sleep(1)
                if login is None or ssh is None:
                    tail = cli(env, "server", "log", "b1", "--lines", "30")
                    raise RuntimeError(f"the server did not reach login: and SSH in time:\n{tail}")
                cli(env, "server", "stop", "b1", "--wait")

                overlay = server.data_dir / "servers" / server_id / "disk.qcow2"
                flat = work / "flat.qcow2"
                t1 = time.monotonic()
                subprocess.run(
                    ["qemu-img", "convert", "-O", "qcow2", str(overlay), str(flat)], check=True
                )
                convert = time.monotonic() - t1
                flat.unlink()
                t2 = time.monotonic()
                cli(env, "server", "image", "b1", "--name", "from-b1", "--wait")
                job = time.monotonic() - t2
            finally:
                # servers outlive the service: a failed run must not leave its machine
                cli(env, "server", "rm", "b1", "--wait")
        bare = bare_boot(image)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"server create -> ACTIVE          {active:7.1f} s")
    print(f"server create -> login: (console) {login:7.1f} s")
    print(f"server create -> SSH with the key {ssh:7.1f} s")
    print(f"bare imageport boot -> login:     {bare:7.1f} s")
    print(f"  ratio server login / bare boot  {login / bare:7.2f}")
    print(f"image from server (job)           {job:7.1f} s")
    print(f"qemu-img convert of the overlay   {convert:7.1f} s")
    print(f"  ratio job / convert             {job / convert:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
