"""Settings of the import service, with embedded defaults that run on one machine.

Every setting has a default; ``IMAGEPORT_<NAME>`` environment variables override them and the
``imageport serve`` flags override those. :func:`load_settings` is the one place they are read.
Each field of :class:`Settings` carries its description, from which :func:`settings_markdown`
generates ``docs/settings.md`` (the table of every setting, its variable and its default).

The ``http_*`` settings bound what a client that has not authenticated can make the server
hold (:mod:`imageport.api.http_limits`; each listener counts its own connections):

* ``http_max_url_bytes`` (33 KiB; longer: 414): the signature checks accept a raw path and a
  raw query of 16 KiB each (``imageport.auth.request``), so every request the service could
  accept, presigned URLs included, fits; a longer one is refused before it is held.
* ``http_max_header_bytes`` (32 KiB; larger: 431): the request head apart from the URL. S3
  refuses request headers over 8 KiB, nginx header lines over 8 KiB (32 KiB in all); a signed
  header value may be 8 KiB here, so any real client's head fits several times over. At most
  100 header lines (Apache's default).
* ``http_head_timeout_seconds`` (30; 408): from the connection's start or the previous
  response's end to the head's last byte, whatever the pace (nginx allows 60 s between two
  reads, Apache 20-40 s in all); a connection that sends nothing is closed after it too.
* ``http_body_timeout_seconds`` (60; 408): while the application waits for body bytes, 32 KiB
  must come at least this often (nginx's ``client_body_timeout``; ~550 bytes/s, Apache's
  ``MinRate`` is 500), and a client must read some of a response at least this often (nginx's
  ``send_timeout``).
* ``http_max_connections`` (512 per listener) and ``http_max_connections_per_client`` (128 per
  address, an IPv6 client per /64; 0: no cap): one more connection is answered 503
  ``SlowDown`` (the SDKs retry it) and closed before it is read. Each open connection may hold
  a head (``http_max_url_bytes + http_max_header_bytes``), or a body buffer (64 KiB) and the
  largest body an API reads into memory (1 MiB of JSON on the image API), so the caps bound the
  memory too. All clients of a proxy in front share its address: raise the per-client cap to
  the total there (or 0).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from imageport.limits import GiB, KiB, TiB

_T = TypeVar("_T")

STORED_FORMATS = ("qcow2", "raw")
"""Formats the service can store images in (``zvhd2`` arrives with fast import)."""

_DOMAIN = re.compile(
    r"^(?=.{1,180}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
    r"(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
"""A DNS name short enough for ``<63-byte bucket>.<domain>:<port>`` to fit the bucket API's
Host cap (255)."""


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The per-user data folder: ``$XDG_DATA_HOME/imageport`` or ``~/.local/share/imageport``."""
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "imageport"


def _setting(default: _T, doc: str, *, shown: str | None = None) -> _T:
    """A field of :class:`Settings`: its default, what it is (``doc``, one sentence of
    Markdown) and, when the bare value would read badly in ``docs/settings.md``, how to show
    the default (``shown``)."""
    return field(default=default, metadata={"doc": doc, "shown": shown})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs to know about its installation (see the module docstring)."""

    data_dir: Path = field(
        default_factory=default_data_dir,
        metadata={
            "doc": "the database (SQLite), buckets, images and temporary files",
            "shown": "`$XDG_DATA_HOME/imageport`, else `~/.local/share/imageport`",
        },
    )
    database_url: str | None = _setting(
        None,
        "SQLAlchemy URL of the database, e.g. `postgresql+pg8000://user@host/db`",
        shown="SQLite in `data_dir`",
    )
    host: str = _setting("127.0.0.1", "address both APIs listen on")
    port: int = _setting(8080, "image API port (0 picks a free one)")
    s3_port: int = _setting(8081, "bucket API port (0 picks a free one)")
    s3_domain: str | None = _setting(
        None,
        "DNS name under which the bucket API also answers virtual-host style requests "
        "(`Host: <bucket>.<s3_domain>`)",
        shown="none (path-style only)",
    )
    region: str = _setting("local-1", "the region name this service serves")
    import_enabled: bool = _setting(
        True, "false: this region refuses external image import (`IMG.REGION`)"
    )
    image_quota: int = _setting(
        50,
        "private images a project may hold (the vendor's 50 per region, `IMG.0015`); 0: no limit",
    )
    stored_format: str = _setting("qcow2", "format images are stored in: `qcow2` or `raw`")
    workers: int = _setting(2, "jobs running at the same time")
    worker_memory_bytes: int = _setting(2 * GiB, "address space of every worker process")
    worker_cpu_seconds: int = _setting(3600, "CPU time of each conversion process")
    worker_file_bytes: int = _setting(2 * TiB, "largest file a conversion may write")
    worker_wall_seconds: int = _setting(
        0, "wall clock of each conversion process; 0: twice `worker_cpu_seconds` plus 60 s"
    )
    convert_rate_limit_bytes: int = _setting(
        0, "bytes per second qemu-img may read in a conversion; 0: no limit"
    )
    max_skew_seconds: int = _setting(
        900, "how far a signature's date may be from the server's clock, either way"
    )
    normal_import_max_bytes: int = _setting(
        128 * GiB, "files larger than this need fast import (IMG-SIZE)"
    )
    import_max_bytes: int = _setting(1 * TiB, "nothing larger is imported at all (IMG-SIZE)")
    token_lifetime_seconds: int = _setting(24 * 3600, "lifetime of an `X-Auth-Token`")
    console_session_seconds: int = _setting(
        8 * 3600, "lifetime of a web console sign-in (at most `token_lifetime_seconds`)"
    )
    console_bucket_url: str | None = _setting(
        None,
        "the bucket API's address as browsers reach it, for the web console's uploads "
        "(e.g. `https://obs.example.com`)",
        shown="the console's own host name on `s3_port`",
    )
    console_origin: str | None = _setting(
        None,
        "the web console's origin as browsers reach it, behind a proxy (e.g. "
        "`https://console.example.com`): the console takes its forms from it, marks the "
        "session cookie `Secure` when it is `https`, and the bucket API lets it upload parts "
        "from a browser (CORS)",
        shown="the request's own origin; for uploads, its host name on the image API's port",
    )
    check_cpu_seconds: int = _setting(
        20,
        "CPU time the checker may spend on one image (wall clock: three times that plus 30 s): "
        "a well-formed image of any size is checked in about a second, so more is itself a "
        "finding (IMG-SAFE)",
    )
    project_running_jobs: int = _setting(
        0,
        "jobs of one project running at the same time; 0: half the workers (at least one), so "
        "one project's slow or hostile jobs never hold every worker",
    )
    project_job_limit: int = _setting(
        20, "unfinished (INIT or RUNNING) jobs one project may have (more: `IMG.0194`)"
    )
    project_storage_bytes: int = _setting(
        1 * TiB,
        "bytes of stored images (and of conversions under way) one project may hold "
        "(`IMG.0015`); 0: no limit",
    )
    project_object_bytes: int = _setting(
        1 * TiB,
        "bytes of bucket objects, unfinished multipart parts and staged Glance data one project "
        "may hold (more: 403 `QuotaExceeded`); 0: no limit",
    )
    free_space_reserve_bytes: int = _setting(
        1 * GiB,
        "free disk space in the data dir that conversions and uploads must leave, beyond their "
        "own bound (`IMG.1075`; 507 `InsufficientStorage` on the bucket API)",
    )
    project_open_uploads: int = _setting(
        1000,
        "unfinished multipart uploads one project may have open (more: 403 `QuotaExceeded`; S3 "
        "has no such limit, but each one holds a folder, rows and parts on disk); 0: no limit",
    )
    # boot tests: stored images booted in throw-away QEMU machines (docs/boot.md)
    boot_test_concurrency: int = _setting(
        1,
        "boot tests running at once on this host (each a QEMU machine of 1 GiB and 2 vCPUs, "
        "for the boot-test route and the import's boot phase alike; more wait their turn); "
        "0: boot tests are not offered (`IMG.BOOT`)",
    )
    boot_test_timeout_seconds: int = _setting(
        300,
        "seconds a boot test gives each firmware when the request names no `timeout`, and "
        "the import's boot phase always (10-3600; a Debian 12 guest reaches its login prompt "
        "in 35-180 s under TCG)",
    )
    boot_test_max_seconds: int = _setting(
        900, "the longest `timeout` a boot-test request may ask for, per firmware (10-3600)"
    )
    import_boot_test: bool = _setting(
        False,
        "true: the import of every system image ends with a boot test (its verdict joins the "
        "image's report) unless its registration says `boot_test: false`; false: only when "
        "it says `boot_test: true`",
    )
    # servers: virtual machines run by this service (service/servers/, adapters/qemu/)
    server_quota: int = _setting(
        4, "servers (not deleted) one project may have (more: `Ecs.0001`); 0: no servers at all"
    )
    server_host_vcpus: int = _setting(
        4, "vCPUs all running servers together may have (more: `Ecs.0319`)"
    )
    server_host_memory_mib: int = _setting(
        4096, "MiB of memory all running servers together may have (more: `Ecs.0319`)"
    )
    server_max_memory_mib: int = _setting(
        2048, "MiB of memory one server may have: flavors above it are not offered"
    )
    server_accelerator: str = _setting(
        "auto",
        "`kvm`, `tcg`, or `auto`: KVM when a probe machine really runs with it here (servers "
        "and boot tests)",
    )
    server_user: str = _setting(
        "nobody",
        "the unprivileged user QEMU runs as when the service runs as root",
    )
    keypair_quota: int = _setting(
        100,
        "SSH key pairs one project may hold (Nova's default; more: 403 `Ecs.0001`); 0: none at all",
    )
    # the HTTP limits of both listeners: see the module docstring for the reasoning
    http_max_url_bytes: int = _setting(33 * KiB, "longest request target (longer: 414)")
    http_max_header_bytes: int = _setting(
        32 * KiB, "largest request head apart from the target, 100 lines at most (larger: 431)"
    )
    http_head_timeout_seconds: int = _setting(30, "time to send a whole request head (408)")
    http_body_timeout_seconds: int = _setting(
        60, "time for each 32 KiB of a body, and for a client to read some of a response (408)"
    )
    http_max_connections: int = _setting(
        512, "connections per listener (more: 503 `SlowDown`); 0: no cap"
    )
    http_max_connections_per_client: int = _setting(
        128,
        "connections per client address, an IPv6 client per /64 (more: 503 `SlowDown`); 0: no cap",
    )

    @property
    def db_url(self) -> str:
        """The database URL actually used (SQLite in the data dir unless one is set)."""
        return self.database_url or f"sqlite:///{self.data_dir / 'imageport.db'}"

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def staged_dir(self) -> Path:
        """Image data received on the Glance routes, kept until its import job ends."""
        return self.data_dir / "staged"

    @property
    def boot_screens_dir(self) -> Path:
        """The screenshots of boot tests, one PNG per image and firmware, named by their ids
        (``<image id>.<firmware>.png``); removed with the image."""
        return self.data_dir / "boot-screens"

    @property
    def servers_dir(self) -> Path:
        """One private folder per server: its system disk overlay, config drive, sockets, log."""
        return self.data_dir / "servers"

    @property
    def tmp_dir(self) -> Path:
        """Scratch space; emptied when the service starts (nothing in it is ever live state)."""
        return self.data_dir / "tmp"


_BOOL = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _coerce(name: str, kind: object, raw: str) -> object:
    if kind in ("int", int):
        return int(raw)
    if kind in ("bool", bool):
        if raw.lower() not in _BOOL:
            raise ValueError(f"IMAGEPORT_{name.upper()} must be true or false, not {raw!r}")
        return _BOOL[raw.lower()]
    if kind in ("Path", Path):
        return Path(raw)
    return raw


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Defaults, then ``IMAGEPORT_*`` variables from ``env``, then non-None ``overrides``."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for f in dataclasses.fields(Settings):
        raw = env.get(f"IMAGEPORT_{f.name.upper()}")
        if raw is not None:
            values[f.name] = _coerce(f.name, f.type, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "data_dir" in values:
        values["data_dir"] = Path(str(values["data_dir"]))
    if "s3_domain" in values:
        values["s3_domain"] = normal_domain(str(values["s3_domain"]))
    if "console_origin" in values:
        values["console_origin"] = normal_origin(str(values["console_origin"]))
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.stored_format not in STORED_FORMATS:
        raise ValueError(f"stored_format must be one of {', '.join(STORED_FORMATS)}")
    if settings.image_quota < 0:
        raise ValueError("image_quota must be 0 (no limit) or more")
    for name in ("boot_test_timeout_seconds", "boot_test_max_seconds"):
        if not 10 <= getattr(settings, name) <= 3600:
            raise ValueError(f"{name} must be 10-3600 (seconds)")
    if settings.boot_test_timeout_seconds > settings.boot_test_max_seconds:
        raise ValueError("boot_test_timeout_seconds must not be above boot_test_max_seconds")
    for names, least, words in _MINIMUMS:
        for name in names:
            if getattr(settings, name) < least:
                raise ValueError(f"{name} must be {words}")
    return settings


#: Settings with a floor: (names, the least value, how the error says it).
_MINIMUMS: tuple[tuple[tuple[str, ...], int, str], ...] = (
    (("check_cpu_seconds", "project_job_limit"), 1, "1 or more"),
    (
        (
            "project_running_jobs",
            "project_storage_bytes",
            "project_object_bytes",
            "free_space_reserve_bytes",
            "project_open_uploads",
            "keypair_quota",
            "boot_test_concurrency",
        ),
        0,
        "0 or more",
    ),
    (
        (
            "http_max_url_bytes",
            "http_max_header_bytes",
            "http_head_timeout_seconds",
            "http_body_timeout_seconds",
        ),
        1,
        "1 or more",
    ),
    (("http_max_connections", "http_max_connections_per_client"), 0, "0 (no limit) or more"),
)


def normal_domain(text: str) -> str | None:
    """``s3_domain`` lower-cased without a final dot; None when empty; ValueError when it is
    not a DNS name (labels of letters, digits and ``-``)."""
    name = text.strip().lower().removesuffix(".")
    if not name:
        return None
    if not _DOMAIN.match(name):
        raise ValueError(f"s3_domain {text[:80]!r} is not a DNS name like s3.example.com")
    return name


def normal_origin(text: str) -> str | None:
    """``console_origin`` as ``scheme://host[:port]`` in lower case; None when empty;
    ValueError when it is not an http(s) origin (a path, a query or a user is not one)."""
    origin = text.strip().lower().removesuffix("/")
    if not origin:
        return None
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise ValueError(
            f"console_origin {text[:80]!r} is not an origin like https://console.example.com"
        )
    return origin


_UNITS = (("TiB", TiB), ("GiB", GiB), ("MiB", 1 << 20), ("KiB", KiB))


def _default_text(f: dataclasses.Field[object]) -> str:
    """How ``docs/settings.md`` shows the default of the field ``f``."""
    shown = f.metadata.get("shown")
    if shown:
        return str(shown)
    value = f.default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and f.name.endswith("_bytes") and value:
        for unit, size in _UNITS:
            if value % size == 0:
                return f"{value // size} {unit}"
    if isinstance(value, str):
        return f"`{value}`"
    return str(value)


def settings_markdown() -> str:
    """``docs/settings.md``: every setting, its variable, its default and what it is."""
    out = [
        "# Settings",
        "",
        "Generated by `scripts/docs` from the fields of `Settings` in "
        "`src/imageport/settings.py`; do not edit by hand.",
        "",
        "Every setting has a default. An `IMAGEPORT_<NAME>` environment variable overrides it "
        "(numbers in bytes or seconds, booleans `true` or `false`), and the `imageport serve` "
        "flags (`imageport serve --help`) override both. Why the `http_*` limits have the "
        "values they have is explained in the module docstring of `settings.py`.",
        "",
        "| setting | variable | default | what it is |",
        "| --- | --- | --- | --- |",
    ]
    for f in dataclasses.fields(Settings):
        variable = f"IMAGEPORT_{f.name.upper()}"
        doc = f.metadata.get("doc")
        if not doc:
            raise ValueError(f"the setting {f.name} has no description (declare it with _setting)")
        out.append(f"| `{f.name}` | `{variable}` | {_default_text(f)} | {doc} |")
    return "\n".join(out) + "\n"
