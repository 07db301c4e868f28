"""The relay QEMU starts for each guest connection to the metadata address: it copies the
connection (its stdin and stdout) to and from the metadata socket of the server.

QEMU runs it as ``python3 -I -S <this file> NAME OWNER``, as the user QEMU runs as: isolated
from the environment, without site packages, standard library only (this file must be
readable by that user, which the host checks before it starts a machine).
NAME is the abstract unix socket of the metadata service of the server, OWNER the user id the
service runs as: the relay talks only to a listener running as that user. Its stderr is
the guest connection too, so nothing is ever written there. It ends when either side closes or
after :data:`IDLE_SECONDS` of silence.
"""

import os
import select
import socket
import struct
import sys

IDLE_SECONDS = 30
CHUNK = 65536


def relay(name: str, owner: int) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect("\0" + name)
    cred = struct.Struct("3i")
    _pid, uid, _gid = cred.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, cred.size))
    if uid != owner:
        return
    sock.settimeout(None)
    reading = [0, sock.fileno()]
    while True:
        ready = select.select(reading, [], [], IDLE_SECONDS)[0]
        if not ready:
            return
        if 0 in ready:
            data = os.read(0, CHUNK)
            if data:
                sock.sendall(data)
            else:
                sock.shutdown(socket.SHUT_WR)
                reading.remove(0)
        if sock.fileno() in ready:
            data = sock.recv(CHUNK)
            if not data:
                return
            while data:
                data = data[os.write(1, data) :]


def main() -> None:
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 2)
    try:
        relay(sys.argv[1], int(sys.argv[2]))
    except (OSError, ValueError, IndexError):
        sys.exit(1)


if __name__ == "__main__":
    main()
