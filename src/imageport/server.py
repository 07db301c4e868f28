"""``imageport serve``: the image API, the bucket API and the job workers in one process.

Start-up, in order (each step can fail with a clear message and exit status 2):

1. claim the data directory: create it and its sub-folders and take an exclusive lock on
   ``serve.lock`` (a second server on the same data would corrupt it);
2. bind both listening sockets (port 0 picks a free port), so a port already in use is reported
   before any work is done;
3. build the services (:func:`imageport.wiring.build_services`: database migrated to head), run
   crash recovery (:func:`imageport.service.jobs.recovery.recover`: empties ``tmp/``, puts
   interrupted jobs back; then
   :func:`imageport.service.servers.recovery.recover_servers`: the server host re-attaches
   the machines, and each server's row is made to say what its machine is), start the job
   queue and resubmit the jobs recovery returned;
4. serve both APIs with two ``uvicorn.Server`` instances in one asyncio loop, and print::

       imageport: image API http://127.0.0.1:8080, bucket API http://127.0.0.1:8081, data in DIR
       imageport: web console http://127.0.0.1:8080/console/
       imageport: listening image-api=127.0.0.1:8080 s3-api=127.0.0.1:8081

   (the second line is for scripts and tests: it carries the real ports when 0 was asked).

SIGTERM or SIGINT stops both servers from accepting, lets requests in flight finish (up to
:data:`GRACEFUL_SECONDS`), then stops the job queue. A job still RUNNING when the process ends
(or is killed) is put right by recovery at the next start. A second SIGINT forces the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shlex
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO

import uvicorn
import uvloop
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

from imageport import logs
from imageport.api.http_limits import Api, HttpLimits, fit_open_file_limit
from imageport.api.http_protocol import protocol_class
from imageport.api.middleware import RequestContext
from imageport.api.ops import ops_routes, with_s3_health
from imageport.api.websocket_protocol import websocket_settings
from imageport.errors import ImageportError
from imageport.service.access.projects import count_projects
from imageport.service.context import Services
from imageport.settings import Settings

log = logging.getLogger("imageport.server")

#: How long requests in flight may take to finish after SIGTERM before they are cut off.
GRACEFUL_SECONDS = 10
#: How long stopping the job queue may wait for running jobs (they are recovered next start).
QUEUE_STOP_SECONDS = 10.0
EXIT_OK = 0
EXIT_START_FAILED = 2


class StartError(ImageportError):
    """The server cannot start; the message says why, for the operator."""


def build_apps(
    services: Services, *, bucket_port: int | None = None, ims_port: int | None = None
) -> tuple[ASGIApp, ASGIApp]:
    """The two ASGI applications: (image API with /health, /metrics and the web console under
    ``/console``, bucket API). ``bucket_port``: the bucket API's real port, where the console's
    browsers upload (when the setting ``console_bucket_url`` does not say otherwise);
    ``ims_port``: the image API's, whose pages the bucket API lets upload (CORS, unless the
    setting ``console_origin`` names the console's origin)."""
    from imageport.api.ims.app import build_ims_app
    from imageport.api.s3.app import build_s3_app
    from imageport.api.s3.cors import ConsoleOrigin
    from imageport.console.app import build_console_app
    from imageport.console.pages import BASE, Site

    site = Site(
        bucket_port=bucket_port,
        bucket_url=services.settings.console_bucket_url,
        origin=services.settings.console_origin,
    )
    ims_root = Starlette(
        routes=[
            *ops_routes(services),
            Mount(BASE, app=build_console_app(services, site)),
            Mount("/", app=build_ims_app(services)),
        ]
    )
    ims = RequestContext(ims_root, api="ims")
    console = ConsoleOrigin(console_port=ims_port, origin=services.settings.console_origin)
    s3 = RequestContext(with_s3_health(build_s3_app(services, console), services), api="s3")
    return ims, s3


# -- data directory -----------------------------------------------------------------------------


@contextlib.contextmanager
def claimed_data_dir(settings: Settings) -> Iterator[None]:
    """Create the data folders and hold ``serve.lock`` for as long as the context lasts."""
    for folder in (
        settings.data_dir,
        settings.objects_dir,
        settings.uploads_dir,
        settings.images_dir,
        settings.staged_dir,
        settings.tmp_dir,
    ):
        folder.mkdir(parents=True, exist_ok=True)
    lock_path = settings.data_dir / "serve.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StartError(f"another imageport serve is using {settings.data_dir}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


# -- sockets ------------------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6, as ``host`` resolves)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.create_server(address, family=family, backlog=1024)
    except OSError as exc:
        raise StartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


def host_port(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- uvicorn ------------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`serve_forever` (uvicorn's own handlers
    would let only the last of two servers hear SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(app: ASGIApp, limits: HttpLimits, api: Api) -> uvicorn.Server:
    """A uvicorn server for ``app`` on a socket we bound (our logging, no lifespan), with the
    HTTP limits of :mod:`imageport.api.http_limits` (``api``: the listener's error shape). The
    image API's listener also takes WebSockets (the consoles:
    :mod:`imageport.api.websocket_protocol`); the bucket API's takes none."""
    websockets = websocket_settings() if api == "ims" else {"ws": "none"}
    config = uvicorn.Config(
        # httptools parses request bodies in C: a 2 GiB PUT is drained in ~2 s instead of ~4
        app,
        http=protocol_class(limits, api),
        **websockets,
        lifespan="off",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    return _Server(config)


async def serve_forever(
    servers: Sequence[tuple[uvicorn.Server, socket.socket]], on_started: Callable[[], None]
) -> None:
    """Serve until SIGTERM/SIGINT; ``on_started`` runs once every server accepts connections."""
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        log.info("received %s, stopping", sig.name)
        for server, _ in servers:
            if server.should_exit and sig == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)

    async def announce() -> None:
        while not all(server.started for server, _ in servers):
            if any(server.should_exit for server, _ in servers):
                return
            await asyncio.sleep(0.01)
        on_started()

    try:
        await asyncio.gather(
            announce(), *(server.serve(sockets=[sock]) for server, sock in servers)
        )
    finally:
        for server, _ in servers:
            server.should_exit = True
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


# -- the command --------------------------------------------------------------------------------


def _where(settings: Settings) -> str:
    if settings.database_url:
        shown = make_url(settings.database_url).render_as_string(hide_password=True)
        return f"data in {settings.data_dir}, database {shown}"
    return f"data in {settings.data_dir}"


def _admin_hint(services: Services) -> str | None:
    if count_projects(services):
        return None
    admin = "imageport admin --data-dir " + shlex.quote(str(services.settings.data_dir))
    if services.settings.database_url:
        admin += " --database-url " + shlex.quote(services.settings.database_url)
    return (
        f"imageport: no project yet; create one and an access key with:\n"
        f"    {admin} project create demo\n"
        f"    {admin} key create --project demo"
    )


def _start_services(settings: Settings) -> Services:
    from imageport.service.jobs.recovery import recover
    from imageport.service.servers.recovery import recover_servers
    from imageport.wiring import build_services

    services = build_services(settings)
    job_ids = recover(services)
    changed = recover_servers(services)  # after the jobs: it knows which will run again
    if changed:
        log.info("recovery put %d server(s) right after the restart", changed)
    if services.queue is not None:
        services.queue.start()
    for job_id in job_ids:
        services.submit_job(job_id)
    if job_ids:
        log.info("resubmitted %d job(s) after recovery", len(job_ids))
    return services


def run(settings: Settings, out: IO[str] | None = None) -> int:
    """Run the service until stopped; the exit status (0, or 2 when it could not start)."""
    stdout = out or sys.stdout
    logs.configure()
    try:
        with claimed_data_dir(settings), contextlib.ExitStack() as stack:
            sockets = [bind(settings.host, settings.port), bind(settings.host, settings.s3_port)]
            for sock in sockets:
                stack.callback(sock.close)
            services = _start_services(settings)
            stack.callback(services.db.dispose)
            if services.host is not None:
                # servers keep running: the next start re-attaches them
                stack.callback(services.host.close)
            if services.queue is not None:
                stack.callback(services.queue.stop, QUEUE_STOP_SECONDS)
            ims, s3 = build_apps(
                services,
                bucket_port=sockets[1].getsockname()[1],
                ims_port=sockets[0].getsockname()[1],
            )
            hint = _admin_hint(services)

            def started() -> None:
                image_api, bucket_api = (host_port(s) for s in sockets)
                print(
                    f"imageport: image API http://{image_api}, bucket API "
                    f"http://{bucket_api}, {_where(settings)}",
                    file=stdout,
                )
                print(f"imageport: web console http://{image_api}/console/", file=stdout)
                if hint:
                    print(hint, file=stdout)
                print(
                    f"imageport: listening image-api={image_api} s3-api={bucket_api}",
                    file=stdout,
                    flush=True,
                )
                log.info(
                    "serving: image API %s, bucket API %s, %d worker(s)",
                    image_api,
                    bucket_api,
                    settings.workers,
                )

            limits = HttpLimits.from_settings(settings)
            fit_open_file_limit(limits, listeners=len(sockets))
            pairs = [
                (make_server(ims, limits, "ims"), sockets[0]),
                (make_server(s3, limits, "s3"), sockets[1]),
            ]
            # uvloop: a faster event loop (the bucket API moves GiBs through it)
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(serve_forever(pairs, started))
            log.info("stopped serving; stopping the job queue")
    except StartError as exc:
        print(f"imageport: {exc}", file=sys.stderr)
        return EXIT_START_FAILED
    except KeyboardInterrupt:
        return 130
    return EXIT_OK
