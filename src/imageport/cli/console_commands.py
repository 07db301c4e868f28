"""``imageport server console NAME_OR_ID``: this terminal on a server's serial console.

::

    imageport server console NAME_OR_ID      # Ctrl-] detaches

The server is named by its id, or by its name when exactly one server of the project has it
(looked up with ``GET /v1/{project_id}/cloudservers/detail?name=NAME``). The command asks the
service for the console's URL (``POST /v1/{project_id}/cloudservers/{id}/actions/serial-console``,
signed as every client request) and attaches (:mod:`imageport.client.serial_console`): when the
input is a terminal it is put in raw mode (every key, ``Ctrl-C`` included, goes to the guest)
and restored at the end. What the guest prints reaches the terminal as it is, escape sequences
included, as with ``virsh console``. Exit status: 0 when the user detached (``Ctrl-]`` or the end
of the input), 1 when the service closed the console (the server stopped, nothing was typed for
15 minutes), 2 on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from imageport.cli.client_setup import EXIT_FAILED, EXIT_OK, err, guarded, ims_client

if TYPE_CHECKING:
    from imageport.client.ims import ImsClient

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def add_parser(
    server_actions: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    """Add ``console`` to the ``server`` actions."""
    console = server_actions.add_parser(
        "console",
        parents=common,
        help="attach this terminal to a server's serial console (Ctrl-] detaches)",
    )
    console.add_argument("server", metavar="NAME_OR_ID")
    console.set_defaults(func=guarded(server_console))


def server_id_of(client: ImsClient, name_or_id: str) -> str:
    """The id of the project's server ``name_or_id``: itself when it has the shape of a server
    id, else the one server with that name (ClientError for none, or several)."""
    from imageport.client.errors import ClientError

    if _UUID.match(name_or_id):
        return name_or_id
    try:
        found = client.servers_named(name_or_id)
    except ClientError as exc:
        if exc.status == 404:
            raise ClientError(
                f"cannot look up the server named {name_or_id!r} (this service lists no "
                "servers): give its id"
            ) from exc
        raise
    ids = [str(s.get("id", "")) for s in found]
    if not ids:
        raise ClientError(f"no server is named {name_or_id!r}")
    if len(ids) > 1:
        raise ClientError(f"{len(ids)} servers are named {name_or_id!r}: give the id of one")
    return ids[0]


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """``fd`` in raw mode for the block when it is a terminal."""
    import os
    import termios
    import tty

    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def server_console(args: argparse.Namespace) -> int:
    """Attach to the server's serial console until Ctrl-] (see the module docstring)."""
    from imageport.client.serial_console import attach, websocket_url

    with ims_client(args) as client:
        server_id = server_id_of(client, args.server)
        url = websocket_url(client.transport.base_url, client.serial_console_url(server_id))
    sys.stderr.write(f"imageport: serial console of server {server_id}; Ctrl-] detaches\n")
    stdin = sys.stdin.fileno()
    with _raw_terminal(stdin):
        end = attach(url, stdin, sys.stdout.buffer)
    sys.stderr.write("\n")  # the guest's last line may have no end
    if end.detached:
        sys.stderr.write("imageport: detached\n")
        return EXIT_OK
    err(f"the console closed: {end.reason}")
    return EXIT_FAILED
