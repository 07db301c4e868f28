"""Time the web console against the service's own clients, measured in the same run.

Against a real ``imageport serve`` on loopback (its own temporary data dir, SQLite):

* **browser upload**: Debian's Chromium, driven by Playwright, uploads a file of random bytes
  through the console's upload page (presigned parts straight to the bucket API, 4 in flight),
  against ``imageport upload`` of the same file with the same part size and parallelism —
  ratio = CLI time / browser time (1.0: the page is as fast as the CLI);
* **pages**: the images list page (HTML, rendered on the server) against the image API's list
  route (``GET /v2/cloudimages``, JSON) for the same images, and the check page of an object
  against ``imageport check BUCKET:KEY`` (the check route), each the median of ``--reps``
  requests — ratio = page time / API time.

Usage: ``bench/run --console [--mib N] [--part-mib N] [--reps N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
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

import boto3  # noqa: E402
import httpx  # noqa: E402
from botocore.config import Config  # noqa: E402
from playwright.sync_api import expect  # noqa: E402
from service_import import (  # noqa: E402
    IMAGEPORT,
    MiB,
    Server,
    bench_dir,
    client_env,
    running_server,
)

from support import console_browser, import_fixtures  # noqa: E402
from support.e2e_clients import token_for  # noqa: E402
from support.server_process import Keys  # noqa: E402


def random_file(mib: int) -> Path:
    """``mib`` MiB of random bytes, made once under the bench cache."""
    path = bench_dir() / f"console-{mib}m.bin"
    if not path.exists() or path.stat().st_size != mib * MiB:
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            for _ in range(mib):
                f.write(os.urandom(MiB))
        tmp.replace(path)
    return path


def cli_upload(server: Server, path: Path, key: str, part_mib: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [IMAGEPORT, "upload", str(path), f"bench/{key}", "--part-size", str(part_mib)],
        check=True,
        env=client_env(server),
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def keys_of(server: Server) -> Keys:
    return Keys("bench", server.project_id, server.access_key, server.secret_key)


def browser_upload(server: Server, path: Path, key: str, part_mib: int) -> float:
    keys = keys_of(server)
    with console_browser.chromium() as browser, console_browser.new_page(browser) as page:
        page.set_default_timeout(600_000)
        console_browser.sign_in(page, server.ims_url, keys, then="/console/buckets/bench/upload")
        page.get_by_text("Advanced").click()
        page.get_by_label("Part size (MiB)").fill(str(part_mib))
        page.get_by_label("Object key").fill(key)
        page.get_by_label("Image file").set_input_files(path)
        started = time.perf_counter()
        page.get_by_role("button", name="Start upload").click()
        expect(page.locator("#upload-progress")).to_have_attribute("value", "100", timeout=600_000)
        return time.perf_counter() - started


def median_seconds(fetch: httpx.Client, url: str, reps: int, **kwargs: object) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        answer = fetch.get(url, **kwargs)  # type: ignore[arg-type]
        answer.raise_for_status()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def session_cookie(server: Server) -> dict[str, str]:
    answer = httpx.post(
        server.ims_url + "/console/signin",
        data={"access_key": server.access_key, "secret_key": server.secret_key},
    )
    return {"imageport_console": answer.cookies["imageport_console"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="size of the uploaded file")
    parser.add_argument("--part-mib", type=int, default=16, help="part size of both uploads")
    parser.add_argument("--reps", type=int, default=9, help="requests per page timing")
    args = parser.parse_args()
    reason = console_browser.missing_reason()
    if reason:
        print(f"bench/console: {reason}", file=sys.stderr)
        return 2
    path = random_file(args.mib)
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp)) as server:
        s3 = boto3.client(
            "s3",
            endpoint_url=server.s3_url,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            region_name="local-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        s3.create_bucket(Bucket="bench")

        cli = cli_upload(server, path, "cli.bin", args.part_mib)
        page = browser_upload(server, path, "browser.bin", args.part_mib)
        mib = args.mib
        print(f"upload {mib} MiB, {args.part_mib} MiB parts:")
        print(f"  imageport upload   {cli:6.2f} s  {mib / cli:6.1f} MiB/s")
        print(f"  console (Chromium) {page:6.2f} s  {mib / page:6.1f} MiB/s")
        print(f"  ratio CLI/browser  {cli / page:.2f}")

        s3.upload_file(str(import_fixtures.good_image("qcow2")), "bench", "guest.qcow2")
        cookies = session_cookie(server)
        with httpx.Client(timeout=120) as fetch:
            fetch.cookies.update(cookies)
            token = token_for(server, keys_of(server))
            page_list = median_seconds(fetch, server.ims_url + "/console/images", args.reps)
            api_list = median_seconds(
                fetch,
                server.ims_url + "/v2/cloudimages",
                args.reps,
                headers={"X-Auth-Token": token},
            )
            check_page = median_seconds(
                fetch,
                server.ims_url + "/console/check?bucket=bench&key=guest.qcow2",
                args.reps,
            )
            check_api = _median_post(
                fetch,
                server.ims_url + "/v1/cloudimages/check",
                args.reps,
                token,
                {"image_url": "bench:guest.qcow2"},
            )
        print(f"pages (median of {args.reps}):")
        print(
            f"  images page {page_list * 1000:7.1f} ms  API list {api_list * 1000:7.1f} ms  "
            f"ratio {page_list / api_list:.2f}"
        )
        print(
            f"  check page  {check_page * 1000:7.1f} ms  check route {check_api * 1000:7.1f} ms"
            f"  ratio {check_page / check_api:.2f}"
        )
    return 0


def _median_post(
    fetch: httpx.Client, url: str, reps: int, token: str, body: dict[str, object]
) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        answer = fetch.post(url, json=body, headers={"X-Auth-Token": token})
        answer.raise_for_status()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
