"""``imageport image share|unshare|members|accept|reject``: sharing images with other projects.

The owner shares an active image with projects (``POST /v1/cloudimages/members``) and stops
sharing it (``DELETE``); the member project accepts or rejects it (``PUT``), after which an
accepted image is in its ``imageport image ls --shared`` and can be copied into its own
project. Each of these requests answers a job that has already ended: the command shows it
and exits 1 when it failed (with the job's code and reason), as ``imageport job show`` would.
``members`` lists the image's members (the owner sees them all, a member itself).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from imageport.cli.client_setup import EXIT_FAILED, EXIT_OK, err, guarded, ims_client, print_json
from imageport.service.statuses import JobStatus, MemberStatus

if TYPE_CHECKING:
    from imageport.client.ims import ImsClient


def add_parsers(
    icmd: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    """Add the sharing actions under ``imageport image``."""
    share = icmd.add_parser(
        "share", parents=common, help="share an active image with other projects (pending)"
    )
    share.add_argument("id", metavar="IMAGE")
    share.add_argument(
        "--project", nargs="+", required=True, metavar="P", help="project ids to share it with"
    )
    share.add_argument("--json", action="store_true", help="print the job as JSON")
    share.set_defaults(func=image_share)
    unshare = icmd.add_parser("unshare", parents=common, help="stop sharing an image with projects")
    unshare.add_argument("id", metavar="IMAGE")
    unshare.add_argument("--project", nargs="+", required=True, metavar="P")
    unshare.add_argument("--json", action="store_true", help="print the job as JSON")
    unshare.set_defaults(func=image_unshare)
    listing = icmd.add_parser(
        "members", parents=common, help="the projects an image is shared with, and their answer"
    )
    listing.add_argument("id", metavar="IMAGE")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=image_members)
    for action, status, text in (
        ("accept", MemberStatus.ACCEPTED, "accept an image shared with this project"),
        ("reject", MemberStatus.REJECTED, "reject an image shared with this project"),
    ):
        answer = icmd.add_parser(action, parents=common, help=text)
        answer.add_argument("id", metavar="IMAGE")
        answer.add_argument("--json", action="store_true", help="print the job as JSON")
        answer.set_defaults(func=image_answer, status=str(status))


def _ended(ims: ImsClient, job_id: str, as_json: bool, done: str) -> int:
    """Show the (already ended) job: ``done`` on success, its code and reason when it failed."""
    job: dict[str, Any] = ims.show_job(job_id)
    if as_json:
        print_json(job)
    if job.get("status") != JobStatus.SUCCESS:
        err(
            f"job {job_id} {job.get('status', '?')}: {job.get('error_code') or '?'}: "
            f"{job.get('fail_reason') or ''}"
        )
        return EXIT_FAILED
    if not as_json:
        print(f"{done} (job {job_id})")
    return EXIT_OK


@guarded
def image_share(args: argparse.Namespace) -> int:
    projects = list(dict.fromkeys(args.project))
    with ims_client(args) as ims:
        job_id = ims.add_members([args.id], projects)
        return _ended(
            ims,
            job_id,
            args.json,
            f"shared image {args.id} with {', '.join(projects)}: pending until each accepts",
        )


@guarded
def image_unshare(args: argparse.Namespace) -> int:
    projects = list(dict.fromkeys(args.project))
    with ims_client(args) as ims:
        job_id = ims.delete_members([args.id], projects)
        done = f"image {args.id} is no longer shared with {', '.join(projects)}"
        return _ended(ims, job_id, args.json, done)


@guarded
def image_answer(args: argparse.Namespace) -> int:
    with ims_client(args) as ims:
        job_id = ims.answer_share([args.id], args.status)
        return _ended(ims, job_id, args.json, f"{args.status} image {args.id}")


@guarded
def image_members(args: argparse.Namespace) -> int:
    with ims_client(args) as ims:
        found = ims.list_members(args.id)
    if args.json:
        print_json(found)
        return EXIT_OK
    if not found:
        print(f"image {args.id} is not shared with any project", file=sys.stderr)
        return EXIT_OK
    print(f"{'PROJECT':<32}  {'STATUS':<8}  {'SHARED':<24}  UPDATED")
    for member in found:
        print(
            f"{member.get('member_id', '')!s:<32}  {member.get('status', '')!s:<8}  "
            f"{member.get('created_at', '')!s:<24}  {member.get('updated_at', '')}"
        )
    return EXIT_OK
