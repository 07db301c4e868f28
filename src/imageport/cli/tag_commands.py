"""``imageport image tag add|rm|ls``: an image's key/value tags, and the ``KEY=VALUE`` parsing
the other commands share (``image register --tags``, ``image ls --tag``).

::

    imageport image tag add IMAGE_ID KEY=VALUE [KEY=VALUE ...]   # all or none; a key's old
                                                                 # value is replaced
    imageport image tag rm IMAGE_ID KEY [KEY ...]
    imageport image tag ls IMAGE_ID [--json]

``add`` is the vendor's batch ``create`` (``POST /v2/{project_id}/images/{id}/tags/action``),
``rm`` one ``DELETE .../tags/{key}`` a key (a key the image does not have is an error, 404),
``ls`` ``GET .../tags``. The server checks keys and values (1-36 and 0-43 characters of
``A-Za-z0-9_-``, at most 10 tags an image) and refuses with ``IMG.0001``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence

from imageport.cli.client_setup import EXIT_ERROR, EXIT_OK, err, guarded, ims_client, print_json


def parse_tags(values: Iterable[str], option: str = "") -> list[tuple[str, str]]:
    """``KEY=VALUE`` arguments, each possibly a comma list (``a=1,b=2``), as pairs in order; a
    :class:`~imageport.client.errors.ClientError` (``option: ...``, exit status 2 through
    :func:`~imageport.cli.client_setup.guarded`) names the first one that is not ``KEY=VALUE``
    (``KEY=`` is an empty value)."""
    from imageport.client.errors import ClientError

    pairs: list[tuple[str, str]] = []
    for value in values:
        for item in value.split(","):
            key, eq, val = item.strip().partition("=")
            if not eq or not key.strip():
                lead = f"{option}: " if option else ""
                raise ClientError(
                    f"{lead}tag {item.strip()!r} is not KEY=VALUE (KEY= for an empty value)"
                )
            pairs.append((key.strip(), val.strip()))
    return pairs


def add_parser(
    icmd: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Sequence[argparse.ArgumentParser],
) -> None:
    """Add ``tag add|rm|ls`` to the ``image`` actions."""
    tag = icmd.add_parser("tag", help="add, remove and list an image's key=value tags")
    tcmd = tag.add_subparsers(dest="tag_command", required=True, metavar="ACTION")
    add = tcmd.add_parser(
        "add",
        parents=list(common),
        help="add tags (a key the image has gets the new value); all or none",
    )
    add.add_argument("id", metavar="IMAGE_ID")
    add.add_argument("tags", nargs="+", metavar="KEY=VALUE", help="also a comma list a=1,b=2")
    add.set_defaults(func=_tag_add)
    rm = tcmd.add_parser("rm", parents=list(common), help="remove tags by key")
    rm.add_argument("id", metavar="IMAGE_ID")
    rm.add_argument("keys", nargs="+", metavar="KEY")
    rm.set_defaults(func=_tag_rm)
    ls = tcmd.add_parser("ls", parents=list(common), help="list an image's tags")
    ls.add_argument("id", metavar="IMAGE_ID")
    ls.add_argument("--json", action="store_true", help='[{"key", "value"}]')
    ls.set_defaults(func=_tag_ls)


@guarded
def _tag_add(args: argparse.Namespace) -> int:
    pairs = parse_tags(args.tags)
    keys = [k for k, _ in pairs]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        err(f"tag key(s) {', '.join(twice)} given more than once")
        return EXIT_ERROR
    with ims_client(args) as ims:
        ims.add_tags(args.id, pairs)
    print(f"tagged image {args.id}: " + ", ".join(f"{k}={v}" for k, v in pairs))
    return EXIT_OK


@guarded
def _tag_rm(args: argparse.Namespace) -> int:
    with ims_client(args) as ims:
        for key in args.keys:
            ims.delete_tag(args.id, key)
            print(f"removed tag {key} from image {args.id}")
    return EXIT_OK


@guarded
def _tag_ls(args: argparse.Namespace) -> int:
    with ims_client(args) as ims:
        tags = ims.list_tags(args.id)
    if args.json:
        print_json(tags)
    else:
        for tag in tags:
            print(f"{tag.get('key', '')}={tag.get('value', '')}")
    return EXIT_OK
