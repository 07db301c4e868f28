"""The check report of an image or job, as ``imageport check`` prints it: ``imageport image
report ID`` and ``imageport job report ID`` (``--json``: the ``imageport.check/1`` document),
and the report that ``image show`` and ``job show`` print after the image or job."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from imageport.cli.client_setup import EXIT_FAILED, EXIT_OK, guarded, ims_client, print_json
from imageport.client.errors import ClientError
from imageport.client.ims import ImsClient
from imageport.reports.text_report import render_document
from imageport.service import codes


def stored_report(fetch: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """The report ``fetch`` gets, or None when there is none (yet): ``IMG.NO_REPORT``."""
    try:
        return fetch()
    except ClientError as error:
        if error.code == codes.NO_REPORT:
            return None
        raise


def print_report(doc: dict[str, Any] | None) -> None:
    """The report as text, or a line saying there is none yet."""
    print()
    if doc is None:
        print("check report: none yet (no check has run on the file)")
    else:
        print(render_document(doc), end="")


def _report(args: argparse.Namespace, fetch: Callable[[ImsClient], dict[str, Any]]) -> int:
    with ims_client(args) as ims:
        doc = fetch(ims)
    if args.json:
        print_json(doc)
    else:
        print(render_document(doc), end="")
    verdict = (doc.get("summary") or {}).get("verdict")
    return EXIT_OK if verdict == "pass" else EXIT_FAILED


@guarded
def image_report(args: argparse.Namespace) -> int:
    """``image report ID``: exit 0 when the check passed, 1 when it failed."""
    return _report(args, lambda ims: ims.image_report(args.id))


@guarded
def job_report(args: argparse.Namespace) -> int:
    """``job report ID``: exit 0 when the check passed, 1 when it failed."""
    return _report(args, lambda ims: ims.job_report(args.id))
