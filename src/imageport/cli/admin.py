"""``imageport admin``: manage projects and access keys in the service's database.

::

    imageport admin [--data-dir DIR] [--database-url URL] project create NAME [--json]
    imageport admin ... project ls [--json]
    imageport admin ... key create --project NAME [--json]   # prints the secret, once
    imageport admin ... key ls --project NAME [--json]       # never prints secrets
    imageport admin ... key revoke AK

It works on the database directly (the server need not run; it may) and migrates it first, so
it is also the way to set up a new installation. Settings come from ``IMAGEPORT_*`` variables
and these flags, as ``imageport serve`` reads them. Exit status 0 on success, 2 with a one-line
message on stderr when the project or key does not exist or already exists. The database
libraries are imported inside the commands: the rest of the CLI starts fast without them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from imageport.service.clock import utc_now

if TYPE_CHECKING:
    from sqlalchemy import Engine

EXIT_OK = 0
EXIT_REFUSED = 2


@dataclass(frozen=True, slots=True)
class _AdminContext:
    """The database and clock: all the project and key use cases need."""

    db: Engine
    clock: Callable[[], datetime] = utc_now


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to ``sub``; each sets ``func`` (args -> exit status)."""
    admin = sub.add_parser("admin", help="manage projects and access keys (AK/SK)")
    admin.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="the service's data folder (default: $IMAGEPORT_DATA_DIR or the per-user folder)",
    )
    admin.add_argument(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy URL of the database (default: SQLite in the data dir)",
    )
    what = admin.add_subparsers(dest="admin_command", required=True, metavar="WHAT")

    project = what.add_parser("project", help="create and list projects")
    pcmd = project.add_subparsers(dest="project_command", required=True, metavar="ACTION")
    create = pcmd.add_parser("create", help="create a project")
    create.add_argument("name", help="1-64 letters, digits, '_', '.', '-'")
    create.add_argument("--json", action="store_true", help='print {"id": ..., "name": ...}')
    create.set_defaults(func=_project_create)
    ls = pcmd.add_parser("ls", help="list projects")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_project_ls)

    key = what.add_parser("key", help="create, list and revoke access keys")
    kcmd = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    kcreate = kcmd.add_parser("create", help="create an access key; prints its secret once")
    kcreate.add_argument("--project", required=True, metavar="NAME", help="project name or id")
    kcreate.add_argument(
        "--json", action="store_true", help='print {"access_key", "secret_key", "project_id"}'
    )
    kcreate.set_defaults(func=_key_create)
    kls = kcmd.add_parser("ls", help="list a project's access keys (never their secrets)")
    kls.add_argument("--project", required=True, metavar="NAME", help="project name or id")
    kls.add_argument("--json", action="store_true")
    kls.set_defaults(func=_key_ls)
    krevoke = kcmd.add_parser("revoke", help="revoke an access key (and its tokens)")
    krevoke.add_argument("access_key", metavar="AK")
    krevoke.set_defaults(func=_key_revoke)


def _context(args: argparse.Namespace) -> _AdminContext:
    from imageport.adapters.db.engine import open_database
    from imageport.settings import load_settings

    settings = load_settings(os.environ, data_dir=args.data_dir, database_url=args.database_url)
    return _AdminContext(open_database(settings.db_url))


def _run(args: argparse.Namespace, action: Callable[[_AdminContext], int]) -> int:
    """Run ``action`` on the database; service refusals become exit 2 with their message."""
    from imageport.service.errors import ServiceError

    context = _context(args)
    try:
        return action(context)
    except ServiceError as exc:
        sys.stderr.write(f"imageport admin: {exc.message}\n")
        return EXIT_REFUSED
    finally:
        context.db.dispose()


def _print_json(document: object) -> None:
    print(json.dumps(document, indent=2))


def _project_create(args: argparse.Namespace) -> int:
    from imageport.service.access.projects import create_project

    def action(context: _AdminContext) -> int:
        project = create_project(context, args.name)
        if args.json:
            _print_json({"id": project.id, "name": project.name, "created_at": project.created_at})
        else:
            print(f"created project {project.name} (id {project.id})")
        return EXIT_OK

    return _run(args, action)


def _project_ls(args: argparse.Namespace) -> int:
    from imageport.service.access.projects import list_projects

    def action(context: _AdminContext) -> int:
        found = list_projects(context)
        if args.json:
            _print_json([{"id": p.id, "name": p.name, "created_at": p.created_at} for p in found])
        else:
            for p in found:
                print(f"{p.name:<32} {p.id}  {p.created_at}")
        return EXIT_OK

    return _run(args, action)


def _key_create(args: argparse.Namespace) -> int:
    from imageport.service.access.projects import create_key

    def action(context: _AdminContext) -> int:
        key = create_key(context, args.project)
        if args.json:
            _print_json(
                {
                    "access_key": key.access_key,
                    "secret_key": key.secret_key,
                    "project_id": key.project_id,
                }
            )
        else:
            print(
                f"access key: {key.access_key}\nsecret key: {key.secret_key}\n"
                f"project id: {key.project_id}\n"
                "(the secret is shown only now; keep it safe)"
            )
        return EXIT_OK

    return _run(args, action)


def _key_ls(args: argparse.Namespace) -> int:
    from imageport.service.access.projects import list_keys

    def action(context: _AdminContext) -> int:
        keys = list_keys(context, args.project)
        if args.json:
            _print_json(
                [
                    {
                        "access_key": k.access_key,
                        "project_id": k.project_id,
                        "created_at": k.created_at,
                        "revoked_at": k.revoked_at,
                        "active": k.revoked_at is None,
                    }
                    for k in keys
                ]
            )
        else:
            for k in keys:
                state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
                print(f"{k.access_key}  created {k.created_at}  {state}")
        return EXIT_OK

    return _run(args, action)


def _key_revoke(args: argparse.Namespace) -> int:
    from imageport.service.access.projects import revoke_key

    def action(context: _AdminContext) -> int:
        revoke_key(context, args.access_key)
        print(f"revoked {args.access_key}")
        return EXIT_OK

    return _run(args, action)
