"""``imageport keypair create|ls|show|rm``: the project's SSH key pairs, for logging in to its
servers (the server API's Nova ``os-keypairs`` routes, on the image API's endpoint).

``create NAME`` has the service make an Ed25519 pair: its private key is answered once and
never stored, so the command writes it where it was asked to, before anything else can go
wrong: ``--private-key-out FILE`` creates FILE with mode 0600 (an existing file is refused
before the request is sent, and is never overwritten), otherwise the key is printed alone on
stdout (``imageport keypair create k > k.pem``) and what was made is said on stderr.
``create NAME --public-key FILE`` imports a public key (``ssh-ed25519``, ``ssh-rsa`` of 2048
bits or more, ``ecdsa-sha2-nistp256/384/521``, one line, as ``ssh-keygen`` writes it in
``FILE.pub``); nothing private is involved.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imageport.cli.client_setup import (
    EXIT_ERROR,
    EXIT_OK,
    client_config,
    err,
    guarded,
    print_json,
)
from imageport.reports.terminal import terminal_safe

if TYPE_CHECKING:
    from imageport.client.keypairs import KeypairClient

MAX_PUBLIC_KEY_FILE = 16 * 1024
"""Largest ``--public-key`` file read (an OpenSSH public key is one line of a few KiB at most)."""


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    """Add ``imageport keypair`` and its actions."""
    keypair = sub.add_parser("keypair", help="create, list, show and remove SSH key pairs")
    kcmd = keypair.add_subparsers(dest="keypair_command", required=True, metavar="ACTION")
    create = kcmd.add_parser(
        "create",
        parents=common,
        help="make a key pair (the private key is shown once), or import a public key",
    )
    create.add_argument("name", help="1-64 letters, digits, '-', '_' or spaces")
    create.add_argument(
        "--public-key",
        metavar="FILE",
        help="import this OpenSSH public key (e.g. ~/.ssh/id_ed25519.pub) instead of making one",
    )
    create.add_argument(
        "--private-key-out",
        metavar="FILE",
        help="write the private key of the made pair to FILE (mode 0600; never overwrites); "
        "default: print it alone on stdout",
    )
    create.add_argument("--json", action="store_true", help="print the key pair as JSON")
    create.set_defaults(func=keypair_create)
    ls = kcmd.add_parser("ls", parents=common, help="list the project's key pairs")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=keypair_ls)
    show = kcmd.add_parser("show", parents=common, help="show a key pair and its public key")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=keypair_show)
    rm = kcmd.add_parser(
        "rm", parents=common, help="delete a key pair (servers made with it keep the key)"
    )
    rm.add_argument("name")
    rm.set_defaults(func=keypair_rm)


def keypair_client(args: argparse.Namespace) -> KeypairClient:
    """A client of the key pair routes, for the configured project."""
    from imageport.client.keypairs import KeypairClient

    c = client_config(args, "endpoint", "access_key", "secret_key", "project_id")
    return KeypairClient(c.endpoint, c.credentials)


def _read_public_key(path: str) -> str | None:
    """The text of the ``--public-key`` file; None (after saying why) when it cannot be."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PUBLIC_KEY_FILE + 1)
    except OSError as exc:
        err(f"--public-key: cannot read {path}: {exc.strerror}")
        return None
    if len(data) > MAX_PUBLIC_KEY_FILE:
        err(f"--public-key: {path} is larger than {MAX_PUBLIC_KEY_FILE} bytes: not a public key")
        return None
    if b"PRIVATE KEY" in data:
        err(f"--public-key: {path} is a private key; give its public key (the .pub file)")
        return None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        err(f"--public-key: {path} is not an OpenSSH public key (not ASCII text)")
        return None


def _open_private_out(path: str) -> int | None:
    """A new file at ``path``, mode 0600, opened for writing; None (after saying why) when it
    exists or cannot be made."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        err(f"--private-key-out: {path} exists; it is never overwritten: name a new file")
    except OSError as exc:
        err(f"--private-key-out: cannot create {path}: {exc.strerror}")
    return None


@guarded
def keypair_create(args: argparse.Namespace) -> int:
    public_key = None
    if args.public_key is not None:
        if args.private_key_out is not None:
            err("--private-key-out goes with a made key pair, not with --public-key")
            return EXIT_ERROR
        public_key = _read_public_key(args.public_key)
        if public_key is None:
            return EXIT_ERROR
    out = None if args.private_key_out is None else _open_private_out(args.private_key_out)
    if args.private_key_out is not None and out is None:
        return EXIT_ERROR
    try:
        with keypair_client(args) as client:
            made = client.create_keypair(args.name, public_key)
    except BaseException:
        if out is not None:  # nothing was made: leave no empty key file behind
            os.close(out)
            Path(args.private_key_out).unlink(missing_ok=True)
        raise
    private = made.pop("private_key", None)
    if out is not None:
        with os.fdopen(out, "w") as handle:
            handle.write(str(private or ""))
    return _report_created(args, made, private)


def _report_created(args: argparse.Namespace, made: dict[str, Any], private: object) -> int:
    """Say what was created; print the private key when it was not written to a file."""
    name, fingerprint = made.get("name", args.name), made.get("fingerprint", "?")
    if args.json:
        doc = dict(made)
        if args.private_key_out is not None:
            doc["private_key_file"] = args.private_key_out
        elif private is not None:
            doc["private_key"] = private
        print_json(doc)
    elif private is None:
        print(f"imported key pair {name} (fingerprint {fingerprint})")
    elif args.private_key_out is not None:
        print(
            f"created key pair {name} (fingerprint {fingerprint}); its private key is in "
            f"{args.private_key_out} and cannot be shown again"
        )
    else:
        sys.stdout.write(str(private))
        err(
            f"created key pair {name} (fingerprint {fingerprint}); the private key above is "
            "shown only this once"
        )
    return EXIT_OK


@guarded
def keypair_ls(args: argparse.Namespace) -> int:
    with keypair_client(args) as client:
        found = client.list_keypairs()
    if args.json:
        print_json(found)
        return EXIT_OK
    if not found:
        print("the project has no key pairs", file=sys.stderr)
        return EXIT_OK
    width = max(4, *(len(str(k.get("name", ""))) for k in found))
    print(f"{'NAME':<{width}}  {'FINGERPRINT':<47}  {'TYPE':<4}  KEY")
    for k in found:
        key = str(k.get("public_key", "")).split()
        kind = f"{key[0]} {' '.join(key[2:])}".strip() if key else ""
        print(
            terminal_safe(
                f"{k.get('name', '')!s:<{width}}  {k.get('fingerprint', '')!s:<47}  "
                f"{k.get('type', '')!s:<4}  {kind}"
            )
        )
    return EXIT_OK


@guarded
def keypair_show(args: argparse.Namespace) -> int:
    with keypair_client(args) as client:
        found = client.show_keypair(args.name)
    if args.json:
        print_json(found)
        return EXIT_OK
    for label, key in (
        ("name", "name"),
        ("fingerprint", "fingerprint"),
        ("type", "type"),
        ("created", "created_at"),
        ("public key", "public_key"),
    ):
        print(terminal_safe(f"{label}: {found.get(key, '')}"))
    return EXIT_OK


@guarded
def keypair_rm(args: argparse.Namespace) -> int:
    with keypair_client(args) as client:
        client.delete_keypair(args.name)
    print(f"removed key pair {args.name}")
    return EXIT_OK
