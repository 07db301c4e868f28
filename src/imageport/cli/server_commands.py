"""``imageport server``: servers made from private images, through the server API.

::

    imageport server create NAME --image ID [--flavor F] [--key-name K] [--disk GiB]
                            [--user-data FILE] [--count N] [--wait [--timeout S]] [--json]
    imageport server ls [--status S] [--name N] [--json]
    imageport server show NAME|ID [--json]
    imageport server start|stop|reboot NAME|ID... [--hard] [--wait [--timeout S]]
    imageport server rm NAME|ID... [--wait [--timeout S]]
    imageport server log NAME|ID [--lines N]         # the serial console's last lines
    imageport server ssh NAME|ID [-i KEY] [--user U] [-- COMMAND...]
    imageport server console NAME|ID                  # Ctrl-] detaches (cli/console_commands.py)
    imageport server image NAME|ID --name IMAGE [--description D] [--wait [--timeout S]]
    imageport flavor ls [--json]

A server is named by its id or by its exact name (the one server of the project with that
name). ``server ssh`` runs the ``ssh`` program against the loopback port the service forwards to
the server's port 22, so it works on the machine the service runs on. Exit status as for every
client command: 0 success, 1 a job failed, 2 usage, configuration or server errors.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imageport.cli import console_commands
from imageport.cli.client_setup import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    client_config,
    client_flags,
    err,
    guarded,
    print_json,
)
from imageport.reports.terminal import terminal_safe

if TYPE_CHECKING:
    from imageport.client.servers import ServersClient

#: The SSH forward's key in a server document (ours; ``127.0.0.1:PORT``).
SSH_KEY = "OS-EXT-IMAGEPORT:ssh"
#: Largest user-data file read (the API's own limit is smaller; this only bounds the read).
USER_DATA_MAX = 64 << 10
#: The default user of a cloud image, by the first word of its OS (cloud-init's default user).
DEFAULT_USERS = {"debian": "debian", "ubuntu": "ubuntu", "centos": "centos", "fedora": "fedora"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``server`` and ``flavor``; each leaf sets ``func``."""
    common = [client_flags()]
    server = sub.add_parser("server", help="create, list, power and remove servers; ssh, log")
    scmd = server.add_subparsers(dest="server_command", required=True, metavar="ACTION")

    create = scmd.add_parser("create", parents=common, help="create servers from an image")
    create.add_argument("name")
    create.add_argument("--image", required=True, metavar="ID", help="a private image's id")
    create.add_argument("--flavor", default="s1.medium.2", help="(default s1.medium.2)")
    create.add_argument("--key-name", metavar="K", help="key pair whose public key is injected")
    create.add_argument(
        "--disk", type=int, metavar="GiB", help="system disk size (default: the image's minimum)"
    )
    create.add_argument("--user-data", metavar="FILE", help="cloud-init user data")
    create.add_argument("--count", type=int, default=1, help="servers to create (default 1)")
    _wait_flags(create)
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=guarded(_create))

    ls = scmd.add_parser("ls", parents=common, help="list servers")
    ls.add_argument("--status", help="ACTIVE, SHUTOFF, BUILD, ERROR, DELETED ...")
    ls.add_argument("--name", help="servers whose name contains this")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=guarded(_ls))

    show = scmd.add_parser("show", parents=common, help="show a server")
    show.add_argument("server", metavar="NAME|ID")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=guarded(_show))

    for action, what in (("start", "power on"), ("stop", "power off"), ("reboot", "restart")):
        p = scmd.add_parser(action, parents=common, help=f"{what} servers")
        p.add_argument("servers", nargs="+", metavar="NAME|ID")
        p.add_argument("--hard", action="store_true", help="pull the plug / reset (not start)")
        _wait_flags(p)
        p.set_defaults(func=guarded(_power), action=action)

    rm = scmd.add_parser("rm", parents=common, help="delete servers (and their disks)")
    rm.add_argument("servers", nargs="+", metavar="NAME|ID")
    _wait_flags(rm)
    rm.set_defaults(func=guarded(_rm))

    log = scmd.add_parser("log", parents=common, help="the serial console's last lines")
    log.add_argument("server", metavar="NAME|ID")
    log.add_argument("--lines", type=int, default=50, help="lines (default 50; -1: all kept)")
    log.set_defaults(func=guarded(_log))

    ssh = scmd.add_parser("ssh", parents=common, help="log in to a server with ssh")
    ssh.add_argument("server", metavar="NAME|ID")
    ssh.add_argument("-i", "--identity", metavar="KEY", help="private key file")
    ssh.add_argument("--user", help="user to log in as (default: the image's cloud user)")
    ssh.add_argument(
        "remote_command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND",
        help="to run on the server (-i and --user may also come after NAME|ID)",
    )
    ssh.set_defaults(func=guarded(_ssh))

    image = scmd.add_parser(
        "image", parents=common, help="make a private image from a server's system disk"
    )
    image.add_argument("server", metavar="NAME|ID")
    image.add_argument("--name", required=True, help="the new image's name")
    image.add_argument("--description", help="the new image's description")
    _wait_flags(image)
    image.set_defaults(func=guarded(_image))

    console_commands.add_parser(scmd, common)

    flavor = sub.add_parser("flavor", help="list the flavors servers can have")
    fcmd = flavor.add_subparsers(dest="flavor_command", required=True, metavar="ACTION")
    fls = fcmd.add_parser("ls", parents=common, help="list flavors")
    fls.add_argument("--json", action="store_true")
    fls.set_defaults(func=guarded(_flavors))


def _wait_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="wait for the job to end")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait (default 600)"
    )


def _client(args: argparse.Namespace) -> ServersClient:
    from imageport.client.servers import ServersClient

    c = client_config(args, "endpoint", "access_key", "secret_key", "project_id")
    return ServersClient(c.endpoint, c.credentials)


def resolve(client: ServersClient, name_or_id: str) -> dict[str, Any]:
    """The server named ``name_or_id`` (exactly, and only one), else the one with that id."""
    from imageport.client.errors import ClientError

    named = [
        s
        for s in client.list_servers([("name", name_or_id)])
        if s.get("name") == name_or_id and s.get("status") != "DELETED"
    ]
    if len(named) > 1:
        raise ClientError(f"{len(named)} servers are named {name_or_id!r}: give an id")
    if named:
        return named[0]
    return client.show_server(name_or_id)


def _job_ended(
    client: ServersClient, job_id: str, args: argparse.Namespace, *, quiet: bool = False
) -> int:
    """Wait for ``job_id`` when asked; the exit status. ``quiet``: print nothing on success
    (the caller prints JSON)."""
    if not args.wait:
        if not quiet:
            print(f"job {job_id}")
        return EXIT_OK
    job = client.wait_job(job_id, timeout=args.timeout)
    if job.get("status") != "SUCCESS":
        err(f"job {job_id} failed: {job.get('error_code')}: {job.get('fail_reason')}")
        return EXIT_FAILED
    if not quiet:
        print(f"job {job_id} SUCCESS")
    return EXIT_OK


def _create(args: argparse.Namespace) -> int:
    server: dict[str, object] = {
        "name": args.name,
        "imageRef": args.image,
        "flavorRef": args.flavor,
        "vpcid": "default",
        "nics": [{"subnet_id": "default"}],
        "root_volume": {"volumetype": "SSD", **({"size": args.disk} if args.disk else {})},
        "count": args.count,
    }
    if args.key_name:
        server["key_name"] = args.key_name
    if args.user_data:
        import base64

        with open(args.user_data, "rb") as f:
            data = f.read(USER_DATA_MAX + 1)
        if len(data) > USER_DATA_MAX:
            err(f"{args.user_data} is larger than {USER_DATA_MAX} bytes")
            return EXIT_ERROR
        server["user_data"] = base64.b64encode(data).decode()
    with _client(args) as client:
        job_id, ids = client.create_servers(server)
        if args.json and not args.wait:
            print_json({"job_id": job_id, "serverIds": ids})
            return EXIT_OK
        if not args.json:
            for server_id in ids:
                print(f"server {server_id}")
        status = _job_ended(client, job_id, args, quiet=args.json)
        if args.json:
            print_json([client.show_server(s) for s in ids])
        return status


def _ls(args: argparse.Namespace) -> int:
    filters = [(k, v) for k, v in (("status", args.status), ("name", args.name)) if v]
    with _client(args) as client:
        servers = client.list_servers(filters)
    if args.json:
        print_json(servers)
        return EXIT_OK
    print(f"{'ID':36}  {'NAME':20}  {'STATUS':11}  {'FLAVOR':12}  SSH")
    for s in servers:
        flavor = s.get("flavor") if isinstance(s.get("flavor"), dict) else {}
        print(
            f"{_text(s.get('id')):36}  {_text(s.get('name')):20}  {_text(s.get('status')):11}  "
            f"{_text(flavor.get('id') if flavor else ''):12}  {_text(s.get(SSH_KEY) or '-')}"
        )
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        server = resolve(client, args.server)
    if args.json:
        print_json(server)
        return EXIT_OK
    flavor = server.get("flavor") if isinstance(server.get("flavor"), dict) else {}
    image = server.get("image") if isinstance(server.get("image"), dict) else {}
    fault = server.get("fault")
    rows = [
        ("id", server.get("id")),
        ("name", server.get("name")),
        ("status", server.get("status")),
        ("task", server.get("OS-EXT-STS:task_state") or "-"),
        ("flavor", flavor.get("id") if flavor else None),
        ("image", image.get("id") if image else None),
        ("key pair", server.get("key_name") or "-"),
        ("ssh", server.get(SSH_KEY) or "-"),
        ("created", server.get("created")),
    ]
    if isinstance(fault, dict) and fault:
        rows.append(("fault", f"{fault.get('code')}: {fault.get('message')}"))
    for key, value in rows:
        print(f"{key:10}  {_text(value)}")
    return EXIT_OK


def _ids(client: ServersClient, names: Sequence[str]) -> list[str]:
    return [str(resolve(client, n).get("id")) for n in names]


def _power(args: argparse.Namespace) -> int:
    action = {"start": "os-start", "stop": "os-stop", "reboot": "reboot"}[args.action]
    kind = None if args.action == "start" else ("HARD" if args.hard else "SOFT")
    with _client(args) as client:
        job_id = client.server_action(action, _ids(client, args.servers), kind)
        return _job_ended(client, job_id, args)


def _rm(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job_id = client.delete_servers(_ids(client, args.servers))
        return _job_ended(client, job_id, args)


def _log(args: argparse.Namespace) -> int:
    with _client(args) as client:
        server_id = str(resolve(client, args.server).get("id"))
        output = client.console_output(server_id, args.lines)
    # the guest wrote it: shown with its control characters escaped, lines kept
    sys.stdout.write(terminal_safe(output, lines=True))
    if output and not output.endswith("\n"):
        sys.stdout.write("\n")
    return EXIT_OK


def _ssh(args: argparse.Namespace) -> int:
    if shutil.which("ssh") is None:
        err("server ssh needs the ssh program: apt-get install openssh-client")
        return EXIT_ERROR
    identity, user, command = _ssh_tail(args.remote_command)
    identity = identity or args.identity
    with _client(args) as client:
        server = resolve(client, args.server)
        user = user or args.user or _cloud_user(client, server)
    forward = server.get(SSH_KEY)
    if server.get("status") != "ACTIVE" or not isinstance(forward, str) or ":" not in forward:
        err(f"server {server.get('id')} is {server.get('status')}: no SSH forward to use")
        return EXIT_ERROR
    host, _, port = forward.rpartition(":")
    argv = [
        "ssh",
        "-p",
        port,
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        # a booting guest's forward takes the connection before sshd answers: give up, not hang
        "-o",
        "ConnectTimeout=20",
    ]
    if identity:
        argv += ["-i", str(Path(identity))]
    argv += [f"{user}@{host}", *command]
    os.execvp("ssh", argv)  # noqa: S606,S607 - the user's own ssh, argument list built here


def _ssh_tail(tail: Sequence[str]) -> tuple[str | None, str | None, list[str]]:
    """``-i KEY``/``--user U`` given after the server's name, and the command after ``--``
    (argparse hands everything after the name over as it is)."""
    cut = tail.index("--") if "--" in tail else len(tail)
    options = argparse.ArgumentParser(prog="imageport server ssh NAME|ID", add_help=False)
    options.add_argument("-i", "--identity")
    options.add_argument("--user")
    parsed = options.parse_args(list(tail[:cut]))  # exits 2 with a usage line on anything else
    return parsed.identity, parsed.user, list(tail[cut + 1 :])


def _cloud_user(client: ServersClient, server: dict[str, Any]) -> str:
    """The image's default cloud-init user, from its OS (root when unknown)."""
    from imageport.client.errors import ClientError

    image = server.get("image") if isinstance(server.get("image"), dict) else {}
    image_id = image.get("id") if image else None
    if not isinstance(image_id, str):
        return "root"
    try:
        os_version = str(client.show_image(image_id).get("__os_version") or "")
    except ClientError:
        return "root"
    return DEFAULT_USERS.get(os_version.split(" ", 1)[0].lower(), "root")


def _image(args: argparse.Namespace) -> int:
    body: dict[str, object] = {"name": args.name}
    if args.description:
        body["description"] = args.description
    with _client(args) as client:
        body["instance_id"] = str(resolve(client, args.server).get("id"))
        job_id = client.create_image(body)
        status = _job_ended(client, job_id, args)
        if args.wait and status == EXIT_OK:
            image_id = client.show_job(job_id).get("entities", {}).get("image_id")
            print(f"image {_text(image_id)}")
        return status


def _flavors(args: argparse.Namespace) -> int:
    with _client(args) as client:
        flavors = client.list_flavors()
    if args.json:
        print_json(flavors)
        return EXIT_OK
    print(f"{'ID':16}  {'VCPUS':5}  RAM (MiB)")
    for f in flavors:
        print(f"{_text(f.get('id')):16}  {_text(f.get('vcpus')):5}  {_text(f.get('ram'))}")
    return EXIT_OK


def _text(value: object) -> str:
    return terminal_safe("" if value is None else str(value))
