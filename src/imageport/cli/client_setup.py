"""What every client command shares: credentials flags, the clients, errors and exit status.

The client commands (:mod:`imageport.cli.remote`, :mod:`imageport.cli.image_commands`,
:mod:`imageport.cli.image_update_commands`, :mod:`imageport.cli.tag_commands`,
:mod:`imageport.cli.job_commands`, :mod:`imageport.cli.export`,
:mod:`imageport.cli.console_commands`; all described in ``docs/client.md``) take ``--endpoint``,
``--s3-endpoint``, ``--access-key``, ``--secret-key``, ``--project-id`` and ``--config``
(:func:`client_flags`; see :mod:`imageport.client.config` for the environment variables and the
config file), and exit 0 on success, 1 when the job failed or the image is ``killed``, 2 on
usage, configuration, connection or server errors with a one-line message (:func:`guarded`).
Network libraries are imported inside the functions so ``imageport check`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from imageport.reports.terminal import terminal_safe

if TYPE_CHECKING:
    from imageport.client.config import ClientConfig
    from imageport.client.ims import ImsClient
    from imageport.client.s3 import S3Client

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2


def client_flags() -> argparse.ArgumentParser:
    """The parent parser of every client command: where the service is, who calls it."""
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("service and credentials (else environment, else config)")
    group.add_argument("--endpoint", metavar="URL", help="image API ($IMAGEPORT_ENDPOINT)")
    group.add_argument("--s3-endpoint", metavar="URL", help="bucket API ($IMAGEPORT_S3_ENDPOINT)")
    group.add_argument("--access-key", metavar="AK", help="($IMAGEPORT_ACCESS_KEY)")
    group.add_argument("--secret-key", metavar="SK", help="($IMAGEPORT_SECRET_KEY)")
    group.add_argument("--project-id", metavar="ID", help="($IMAGEPORT_PROJECT_ID)")
    group.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file ($IMAGEPORT_CONFIG, default ~/.config/imageport/client.toml)",
    )
    return flags


def guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn a ClientError into a one-line message and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        from imageport.client.errors import ClientError

        try:
            return command(args)
        except ClientError as exc:
            err(str(exc))
            return EXIT_ERROR

    run.__doc__ = command.__doc__
    return run


def err(message: str) -> None:
    """One ``imageport: ...`` line on stderr (a server's message may quote an image's text:
    its control characters are shown escaped, never sent to the terminal)."""
    sys.stderr.write(f"imageport: {terminal_safe(message, lines=True)}\n")


def client_config(args: argparse.Namespace, *needed: str) -> ClientConfig:
    """The settings from flags, environment and config file; ``needed`` ones must be set."""
    from imageport.client.config import SETTINGS, load_config

    flags = {name: getattr(args, name, None) for name in SETTINGS}
    config = load_config(flags, config_path=args.config)
    config.require(*needed)
    return config


def s3_client(args: argparse.Namespace, pool: int = 8) -> S3Client:
    """A client of the bucket API with ``pool`` connections."""
    from imageport.client.s3 import S3Client

    c = client_config(args, "s3_endpoint", "access_key", "secret_key")
    return S3Client(c.s3_endpoint, c.credentials, region=c.region, pool=pool)


def ims_client(args: argparse.Namespace) -> ImsClient:
    """A client of the image API, for the configured project."""
    from imageport.client.ims import ImsClient

    c = client_config(args, "endpoint", "access_key", "secret_key", "project_id")
    return ImsClient(c.endpoint, c.credentials)


def print_json(doc: object) -> None:
    """``doc`` on stdout as indented JSON with sorted keys."""
    print(json.dumps(doc, indent=2, sort_keys=True))
