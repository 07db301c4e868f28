"""The parts of the QEMU server host that need no virtual machine: the metadata documents and
their HTTP service, the relay QEMU runs per guest connection (run for real, on a socket pair as
libslirp gives it), the config drive, the console log and sessions, the server folder, who
QEMU runs as, the command line, the sparse disk copy."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.adapters.qemu import console_log, metadata_relay
from imageport.adapters.qemu.config_drive import make_config_drive, volume_label
from imageport.adapters.qemu.console_log import ConsoleFanout, ConsoleLog, last_lines
from imageport.adapters.qemu.disks import copy_sparse
from imageport.adapters.qemu.machine_args import MachineConfig, machine_argv, relay_command
from imageport.adapters.qemu.machine_files import MachineFiles, checked_id, qemu_server_of
from imageport.adapters.qemu.metadata_service import MetadataService, http_answer, socket_name
from imageport.adapters.qemu.metadata_tree import MAX_DOCUMENTS, MetadataTree
from imageport.adapters.qemu.privileges import RunAs, can_execute, can_read, run_as
from imageport.service.ports import MachineError

DOCS = {
    "openstack/latest/meta_data.json": b'{"uuid": "x"}',
    "openstack/latest/user_data": b"#cloud-config\n",
    "openstack/latest/network_data.json": b"{}",
    "openstack/2018-08-27/meta_data.json": b'{"uuid": "x"}',
}
NOBODY = RunAs("nobody", 65534, 65534)


# -- the documents --------------------------------------------------------------------------


def test_the_tree_answers_documents_and_lists_folders_as_nova_does() -> None:
    tree = MetadataTree(DOCS)
    assert tree.answer("/openstack/latest/meta_data.json") == b'{"uuid": "x"}'
    assert tree.answer("/openstack/latest/meta_data.json?x=1") == b'{"uuid": "x"}'
    assert tree.answer("/openstack") == b"2018-08-27\nlatest"
    assert tree.answer("/openstack/") == b"2018-08-27\nlatest"
    assert tree.answer("/openstack/latest/") == b"meta_data.json\nnetwork_data.json\nuser_data"
    assert tree.answer("/") == b"openstack"
    for missing in ("/openstack/latest/password", "/latest/meta-data/", "/openstack/../etc"):
        assert tree.answer(missing) is None


@pytest.mark.parametrize(
    "path",
    ["../etc/passwd", "/openstack/x", "openstack//x", "openstack/./x", "openstack/.hidden", "a b"],
)
def test_a_document_path_must_be_plain(path: str) -> None:
    with pytest.raises(MachineError, match="plain relative path"):
        MetadataTree({path: b""})


def test_documents_are_capped_and_a_path_is_not_both_a_file_and_a_folder() -> None:
    with pytest.raises(MachineError, match="both a document and a folder"):
        MetadataTree({"openstack/latest": b"", "openstack/latest/user_data": b""})
    with pytest.raises(MachineError, match="at most"):
        MetadataTree({f"d/{n}": b"" for n in range(MAX_DOCUMENTS + 1)})
    with pytest.raises(MachineError, match="bytes"):
        MetadataTree({"openstack/latest/user_data": b"x" * (2 << 20)})


def test_the_tree_is_kept_private_on_disk_and_read_back(tmp_path: Path) -> None:
    folder = tmp_path / "metadata"
    MetadataTree(DOCS).write(folder)
    MetadataTree({"openstack/latest/meta_data.json": b"{}"}).write(folder)  # replaces
    assert MetadataTree.read(folder).documents == {"openstack/latest/meta_data.json": b"{}"}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "openstack/latest/meta_data.json").stat().st_mode) == 0o600


# -- HTTP ---------------------------------------------------------------------------------------


def test_http_answers() -> None:
    tree = MetadataTree(DOCS)
    ok = http_answer(tree, b"GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: application/json" in ok and b"Content-Length: 13\r\n" in ok
    assert ok.endswith(b'\r\n\r\n{"uuid": "x"}')
    head = http_answer(tree, b"HEAD /openstack HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
    assert http_answer(tree, b"GET /nothing HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert http_answer(tree, b"POST /openstack HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    for garbage in (b"\x00\x01\r\n\r\n", b"GET openstack HTTP/1.1\r\n\r\n", b"GET / SPDY\r\n\r\n"):
        assert http_answer(tree, garbage).startswith(b"HTTP/1.1 400 ")


def _request(name: str, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(15)
        sock.connect("\0" + name)
        answer = b""
        try:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:  # closed without reading what was sent
            pass
        return answer


@pytest.fixture
def service(tmp_path: Path) -> Iterator[MetadataService]:
    name = socket_name(tmp_path, str(uuid.uuid4()))
    running = MetadataService(name, MetadataTree(DOCS), frozenset({os.geteuid()}))
    running.start()
    yield running
    running.close()


def test_the_service_answers_its_peers_only(service: MetadataService, tmp_path: Path) -> None:
    answer = _request(service.name, b"GET /openstack/latest/user_data HTTP/1.0\r\n\r\n")
    assert answer.endswith(b"\r\n\r\n#cloud-config\n")
    assert _request(service.name, b"GET /x" + b"x" * 20000 + b" HTTP/1.0\r\n\r\n") == b""
    with pytest.raises(MachineError, match="taken"):
        MetadataService(service.name, MetadataTree({}), frozenset()).start()
    strangers = MetadataService(
        socket_name(tmp_path, str(uuid.uuid4())), MetadataTree(DOCS), frozenset({12345})
    )
    strangers.start()
    try:
        assert _request(strangers.name, b"GET /openstack HTTP/1.0\r\n\r\n") == b""
    finally:
        strangers.close()


def test_a_guest_cannot_forge_lines_of_the_services_log(
    service: MetadataService, caplog: pytest.LogCaptureFixture
) -> None:
    # a bare LF ends the request line as well as CRLF does; what follows it, and any byte that
    # is not printable ASCII, must not reach the log as written
    request = b"GET /nothing\x1b[2J HTTP/1.1\nINFO forged line\n\n"
    with caplog.at_level(logging.INFO, logger="imageport.servers"):
        assert _request(service.name, request).startswith(b"HTTP/1.1 404 ")
        deadline = time.monotonic() + 10
        while "metadata @" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("metadata @")]
    assert line.endswith(": GET /nothing\\x1b[2J HTTP/1.1 -> 404")
    assert "forged" not in line and "\n" not in line and "\x1b" not in line


def _run_relay(name: str, owner: int, request: bytes) -> bytes:
    """The relay as libslirp runs it: stdin, stdout and stderr one end of a socket pair."""
    ours, theirs = socket.socketpair()
    argv = shlex.split(relay_command(sys.executable, Path(metadata_relay.__file__), name, owner))
    with ours, theirs:
        proc = subprocess.Popen(
            argv, stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=theirs.fileno()
        )
        theirs.close()
        answer = b""
        try:
            ours.sendall(request)
            ours.shutdown(socket.SHUT_WR)
            ours.settimeout(20)
            while chunk := ours.recv(65536):
                answer += chunk
        except ConnectionResetError:  # the relay left without reading: the guest sees a reset
            pass
        finally:
            assert proc.wait(20) in (0, 1)
    return answer


def test_the_relay_carries_a_guest_request_to_the_service(service: MetadataService) -> None:
    request = b"GET /openstack/latest/meta_data.json HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"
    answer = _run_relay(service.name, os.geteuid(), request)
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b'{"uuid": "x"}')
    # a listener that does not run as the service's user gets nothing, nor does the guest
    assert _run_relay(service.name, os.geteuid() + 1, request) == b""
    assert _run_relay("imageport/nobody-listens", os.geteuid(), request) == b""


def test_the_relay_command_is_one_qemu_keeps_whole(tmp_path: Path) -> None:
    script = Path(metadata_relay.__file__)
    command = relay_command("/usr/bin/python3", script, "imageport/ab/cd/metadata", 0)
    assert shlex.split(command) == [
        "/usr/bin/python3",
        "-I",
        "-S",
        str(script),
        "imageport/ab/cd/metadata",
        "0",
    ]
    with pytest.raises(MachineError, match="cut"):
        relay_command("/opt/a,b/python3", script, "n", 0)
    with pytest.raises(MachineError, match="cut"):
        relay_command("/" + "p" * 1000, script, "n", 0)


# -- the config drive ---------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("xorriso") is None, reason="xorriso is not installed")
def test_the_config_drive_is_iso9660_labelled_config_2(tmp_path: Path) -> None:
    MetadataTree(DOCS).write(tmp_path / "tree")
    iso = tmp_path / "config-2.iso"
    make_config_drive("xorriso", tmp_path / "tree", iso)
    assert volume_label(iso) == "config-2"
    assert stat.S_IMODE(iso.stat().st_mode) == 0o600
    if shutil.which("blkid"):
        probe = subprocess.run(["blkid", "-p", "-o", "export", str(iso)], capture_output=True)
        assert b"LABEL=config-2" in probe.stdout and b"TYPE=iso9660" in probe.stdout
    out = tmp_path / "out.json"
    extract = ["-osirrox", "on", "-indev", str(iso), "-extract", "/openstack/latest/meta_data.json"]
    subprocess.run(["xorriso", *extract, str(out)], capture_output=True, check=True)
    assert out.read_bytes() == DOCS["openstack/latest/meta_data.json"]
    assert volume_label(tmp_path / "tree/openstack/latest/user_data") == ""


# -- the console ------------------------------------------------------------------------------


def test_the_console_log_is_bounded_and_read_by_lines(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    log = ConsoleLog(path)
    line = b"x" * 99 + b"\r\n"
    for n in range(20000):  # 2 MB
        log.append(b"%05d" % n + line)
    log.append(b"[  OK  ] Reached target getty.target\r\r\nlast line\r\nprompt login: ")
    log.close()
    size = path.stat().st_size
    assert size <= console_log.KEEP_BYTES + console_log.SLACK_BYTES
    assert path.read_bytes()[:5].isdigit()  # from a line start
    assert last_lines(path, 2) == "last line\nprompt login: "
    # a guest's tty writes CR CR LF for a line end: one line end, not an empty line
    assert last_lines(path, 3) == "[  OK  ] Reached target getty.target\nlast line\nprompt login: "
    assert last_lines(path, 0) == ""
    assert last_lines(path, None).count("\n") == last_lines(path, 10**9).count("\n")
    assert last_lines(tmp_path / "none.log", 5) == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_console_sessions_read_the_output_and_type_into_the_console() -> None:
    typed: list[bytes] = []
    fanout = ConsoleFanout(typed.append)
    first, second = fanout.attach(), fanout.attach()
    fanout.publish(b"login: ")
    assert first.read(1) == b"login: " and second.read(1) == b"login: "
    t0 = time.monotonic()
    assert first.read(0.2) == b"" and time.monotonic() - t0 >= 0.2
    first.write(b"root\n")
    assert typed == [b"root\n"]
    fanout.publish(b"y" * (console_log.SESSION_BUFFER + 10))  # second never reads it all
    assert len(second.read(1)) == console_log.SESSION_BUFFER
    second.close()
    with pytest.raises(MachineError, match="closed"):
        second.read(1)
    fanout.end()
    assert first.read(1).startswith(b"y")  # what the machine wrote before it ended
    with pytest.raises(MachineError, match="off"):
        first.read(1)
    with pytest.raises(MachineError, match="off"):
        fanout.attach()
    many = ConsoleFanout(typed.append)
    for _ in range(console_log.MAX_SESSIONS):
        many.attach()
    with pytest.raises(MachineError, match="sessions"):
        many.attach()


# -- the folder, the user, the command line, the copy ------------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path (unix socket paths are capped at 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ip-", dir="/tmp"))
    yield path
    shutil.rmtree(path)


def test_only_a_canonical_uuid_names_a_folder(short_dir: Path) -> None:
    tmp_path = short_dir
    good = str(uuid.uuid4())
    assert checked_id(good) == good
    for bad in ("..", "", good.upper(), "{" + good + "}", good.replace("-", ""), good + "/x"):
        with pytest.raises(MachineError):
            checked_id(bad)
    with pytest.raises(MachineError, match="too deep"):
        MachineFiles(tmp_path / ("d" * 80), good).make()
    files = MachineFiles(tmp_path, good)
    with pytest.raises(MachineError, match="no machine"):
        files.load_machine()
    files.make()
    assert stat.S_IMODE(files.folder.stat().st_mode) == 0o700
    with pytest.raises(MachineError, match="already"):
        files.make()
    files.pid_file.write_text("12ab\n")
    assert files.daemon_pid() is None
    assert qemu_server_of(os.getpid(), tmp_path) is None  # this process is no QEMU of ours


@pytest.mark.skipif(os.geteuid() != 0, reason="who QEMU runs as matters only for a root service")
def test_qemu_runs_as_the_server_user_and_its_relay_must_be_reachable(tmp_path: Path) -> None:
    assert run_as("root") is None
    assert run_as("nobody") == NOBODY
    with pytest.raises(MachineError, match="does not exist"):
        run_as("no-such-user-here")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "python3").write_bytes(b"")
    (private / "python3").chmod(0o755)
    assert not can_execute(private / "python3", NOBODY)
    assert not can_read(private / "python3", NOBODY)
    assert can_execute(Path(os.path.realpath("/bin/sh")), NOBODY)


def test_the_command_line_listens_on_nothing_but_unix_sockets_and_the_ssh_forward(
    tmp_path: Path,
) -> None:
    files = MachineFiles(tmp_path, str(uuid.uuid4()))
    config = MachineConfig(
        files=files,
        image=tmp_path / "image.qcow2",
        driver="qcow2",
        firmware="uefi",
        vcpus=2,
        memory_mib=1024,
        mac="fa:16:3e:00:00:01",
        config_drive=True,
        accelerator="tcg",
        ssh_port=2222,
        relay="/usr/bin/python3 -I -S /r.py n 0",
        ovmf_code=Path("/usr/share/OVMF/OVMF_CODE_4M.fd"),
        run_as="nobody",
    )
    argv = machine_argv("qemu-system-x86_64", config)
    joined = " ".join(argv)
    assert argv[argv.index("-name") + 1] == f"imageport-server-{files.server_id}"
    assert argv[argv.index("-runas") + 1] == "nobody"
    assert "-daemonize" in argv and "-S" in argv
    assert (
        "spawn=allow" in joined and "obsolete=deny" in joined and "resourcecontrol=deny" in joined
    )
    netdev = argv[argv.index("-netdev") + 1]
    assert "restrict=on" in netdev and "ipv6=off" in netdev
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in netdev
    assert netdev.endswith("guestfwd=tcp:169.254.169.254:80-cmd:/usr/bin/python3 -I -S /r.py n 0")
    chardevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-chardev"]
    assert all(f"path={files.folder}/" in c and "server=on,wait=off" in c for c in chardevs)
    assert argv[argv.index("-vnc") + 1] == f"unix:{files.vnc}"
    disks = [json.loads(argv[i + 1]) for i, a in enumerate(argv) if a == "-blockdev"]
    system, drive = disks
    assert system["file"]["filename"] == str(files.disk)
    assert system["backing"]["read-only"] is True and system["backing"]["backing"] is None
    assert system["backing"]["driver"] == "qcow2"
    assert drive["read-only"] is True and drive["file"]["filename"] == str(files.config_drive)
    assert f"file={files.variables}" in joined


def test_a_disk_copy_keeps_holes(tmp_path: Path) -> None:
    source = tmp_path / "disk"
    with open(source, "wb") as f:
        f.write(b"head" * 1024)
        f.seek(200 << 20)
        f.write(b"tail")
    copy_sparse(source, tmp_path / "copy")
    copy = tmp_path / "copy"
    assert copy.read_bytes() == source.read_bytes()
    assert copy.stat().st_blocks * 512 < 1 << 20
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        copy_sparse(source, copy)


# -- the published relay ----------------------------------------------------------------------


def test_the_relay_is_published_once_where_anyone_can_read_and_no_one_can_change_it(
    tmp_path: Path,
) -> None:
    from imageport.adapters.qemu.privileges import published_relay

    first = published_relay(b"print('relay')\n", tmp_path)
    assert first.read_bytes() == b"print('relay')\n"
    assert stat.S_IMODE(first.stat().st_mode) == 0o444
    assert stat.S_IMODE(first.parent.stat().st_mode) == 0o755
    # a restarted service finds the very file its running machines name
    assert published_relay(b"print('relay')\n", tmp_path) == first
    # another relay (an upgrade) gets its own folder; the old file stays for old machines
    other = published_relay(b"print('relay 2')\n", tmp_path)
    assert other.parent != first.parent and first.exists()


def test_a_folder_of_the_relays_name_that_is_not_ours_is_never_used(tmp_path: Path) -> None:
    from imageport.adapters.qemu.privileges import PUBLISHED, published_relay

    code = b"print('relay')\n"
    digest = hashlib.sha256(code).hexdigest()[:16]
    planted = tmp_path / PUBLISHED.format(uid=os.geteuid(), digest=digest)
    planted.mkdir(mode=0o777)
    (planted / "metadata_relay.py").write_bytes(b"import os; os.system('evil')\n")
    published = published_relay(code, tmp_path)
    assert published.parent != planted
    assert published.read_bytes() == code
