"""``imageport serve``: run the import service (image API, bucket API, job workers).

Flags override ``IMAGEPORT_*`` environment variables, which override the embedded defaults
(see :mod:`imageport.settings`). The service itself lives in :mod:`imageport.server`, imported
only when the command runs so that the rest of the CLI starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from imageport.settings import STORED_FORMATS


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0-65535; 0 picks one)")
    return value


def _workers(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{text}: workers must be 1-64")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to ``sub``; each sets ``func`` (args -> exit status)."""
    p = sub.add_parser(
        "serve",
        help="run the import service: image API, bucket API and job workers",
        description="Run the image API (vendor IMS-compatible) and the S3-compatible bucket "
        "API with the job workers, in one process, on an embedded SQLite database unless "
        "--database-url names another. Stop it with Ctrl-C or SIGTERM.",
    )
    p.add_argument("--host", help="address both APIs listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, help="image API port (default 8080; 0 picks a free one)")
    p.add_argument(
        "--s3-port", type=_port, help="bucket API port (default 8081; 0 picks a free one)"
    )
    p.add_argument(
        "--s3-domain",
        metavar="DOMAIN",
        help="also address buckets virtual-host style as BUCKET.DOMAIN (the Host "
        "header; esdk-obs needs it for its OBS dialect). Default: path-style only",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="database, objects and images (default ~/.local/share/imageport)",
    )
    p.add_argument(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy URL, e.g. postgresql+pg8000://user:pw@host/db "
        "(default: SQLite in the data dir)",
    )
    p.add_argument(
        "--workers", type=_workers, metavar="N", help="import jobs run at the same time (default 2)"
    )
    p.add_argument(
        "--stored-format",
        choices=STORED_FORMATS,
        help="format images are stored in (default qcow2)",
    )
    p.add_argument("--region", metavar="NAME", help="region this service serves (default local-1)")
    p.add_argument(
        "--image-quota",
        type=int,
        metavar="N",
        help="private images a project may hold (default 50, the vendor's; 0: no limit)",
    )
    p.add_argument(
        "--no-import",
        action="store_true",
        help="refuse external image import in this region (IMG.REGION)",
    )
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from imageport.server import run
    from imageport.settings import load_settings

    try:
        settings = load_settings(
            os.environ,
            host=args.host,
            port=args.port,
            s3_port=args.s3_port,
            s3_domain=args.s3_domain,
            data_dir=args.data_dir,
            database_url=args.database_url,
            workers=args.workers,
            stored_format=args.stored_format,
            region=args.region,
            image_quota=args.image_quota,
            import_enabled=False if args.no_import else None,
        )
    except ValueError as exc:
        sys.stderr.write(f"imageport: {exc}\n")
        return 2
    return run(settings)
