"""Launcher that applies resource limits to itself, then becomes the command it was given.

``python -I -S launcher.py --as BYTES --cpu SECONDS --fsize BYTES -- CMD ARGS...``

It runs as its own tiny process (standard library only, started with ``-S`` so that nothing
but this file is imported), because setting limits between ``fork`` and ``exec`` with
``preexec_fn`` is not safe in a threaded program such as the server. The parent starts it in a
new session (``start_new_session=True``) so that killing the process group ends the command and
anything it started. The limits are inherited by the command through ``exec``:

* ``RLIMIT_AS``: address space (a memory bomb fails to allocate instead of swapping the host);
* ``RLIMIT_CPU``: CPU seconds; the soft limit sends SIGXCPU, the hard limit 5 s later SIGKILL;
* ``RLIMIT_FSIZE``: the largest file the command may write (SIGXFSZ past it);
* ``RLIMIT_CORE``: 0, no core dumps of processes that read untrusted bytes.

On Linux it also asks the kernel to SIGKILL the command when the server thread that started it
dies (``PR_SET_PDEATHSIG``), so a server killed with ``kill -9`` leaves no worker running on
(its own session would otherwise keep it alive); ``--parent PID`` closes the race where the
server died before that request.

Exit status 127 means the command could not be started (its reason on stderr).
"""

from __future__ import annotations

import os
import resource
import sys

#: Seconds between the CPU soft limit (SIGXCPU) and the hard limit (SIGKILL).
CPU_GRACE_SECONDS = 5
EXIT_CANNOT_START = 127
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int | None) -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(EXIT_CANNOT_START)


def _limit(which: int, value: int) -> None:
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def main(argv: list[str]) -> int:
    """Parse ``argv`` (without the program name), apply the limits and exec the command."""
    try:
        split = argv.index("--")
    except ValueError:
        sys.stderr.write("run_limited: missing -- before the command\n")
        return 2
    options, command = argv[:split], argv[split + 1 :]
    if not command or len(options) % 2:
        sys.stderr.write("run_limited: usage: --as N --cpu N --fsize N -- CMD ...\n")
        return 2
    values: dict[str, int] = {}
    for name, raw in zip(options[::2], options[1::2], strict=True):
        if name not in ("--as", "--cpu", "--fsize", "--parent") or not raw.isdigit():
            sys.stderr.write(f"run_limited: bad option {name} {raw}\n")
            return 2
        values[name] = int(raw)
    _die_with_parent(values.get("--parent"))
    if "--as" in values:
        _limit(resource.RLIMIT_AS, values["--as"])
    if "--fsize" in values:
        _limit(resource.RLIMIT_FSIZE, values["--fsize"])
    if "--cpu" in values:
        soft = values["--cpu"]
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        wanted = soft + CPU_GRACE_SECONDS
        if hard != resource.RLIM_INFINITY:
            soft, wanted = min(soft, hard), min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, wanted))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        os.execvp(command[0], command)  # noqa: S606 - the parent built this argument list
    except OSError as exc:
        sys.stderr.write(f"run_limited: cannot start {command[0]}: {exc.strerror}\n")
    return EXIT_CANNOT_START


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
