"""Settings of the import service, with embedded defaults that run on one machine.

Every setting has a default; ``IMAGEPORT_<NAME>`` environment variables override them and the
``imageport serve`` flags override those. :func:`load_settings` is the one place they are read.

============================ ======================================== =========================
setting                      meaning                                  default
============================ ======================================== =========================
``data_dir``                 database, buckets, images, temp files    ``$XDG_DATA_HOME/imageport``
``database_url``             SQLAlchemy URL (sqlite or postgresql)    SQLite in ``data_dir``
``host``                     address both APIs listen on              ``127.0.0.1``
``port`` / ``s3_port``       image API port / bucket API port         8080 / 8081
``region``                   the region name this service serves      ``local-1``
``s3_domain``                ``<bucket>.<domain>`` Hosts name buckets none (path-style only)
``import_enabled``           False: the region refuses file import    True
``image_quota``              private images a project may hold        50 (0: no limit)
``stored_format``            format images are stored in              ``qcow2``
``workers``                  jobs run at the same time                2
``worker_memory_bytes``      address-space limit of a job's processes 2 GiB
``worker_cpu_seconds``       CPU-time limit of each job process       3600
``max_skew_seconds``         accepted clock difference of signatures  900
``check_cpu_seconds``        CPU-time limit of the image checker      20 (then IMG-SAFE)
``project_running_jobs``     jobs of one project running at once      0: half the workers
``project_job_limit``        unfinished jobs a project may have       20 (IMG.0194 beyond)
``project_storage_bytes``    bytes of stored images a project may use 1 TiB (0: no limit)
``project_object_bytes``     bytes of objects, parts, staged uploads  1 TiB (0: no limit)
``free_space_reserve_bytes`` disk space a conversion must leave free  1 GiB
``project_open_uploads``     unfinished multipart uploads per project 1000 (0: no limit)
``http_*``                   HTTP limits of both listeners            see below
============================ ======================================== =========================

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

from imageport.limits import GiB, KiB, TiB

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


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs to know about its installation (see the module docstring)."""

    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    s3_port: int = 8081
    #: DNS name under which the bucket API also answers virtual-host style requests
    #: (``Host: <bucket>.<s3_domain>``); None: path-style only
    s3_domain: str | None = None
    region: str = "local-1"
    import_enabled: bool = True
    #: private images a project may hold (the vendor's 50 per region, IMG.0015); 0: no limit
    image_quota: int = 50
    stored_format: str = "qcow2"
    workers: int = 2
    worker_memory_bytes: int = 2 * GiB
    worker_cpu_seconds: int = 3600
    worker_file_bytes: int = 2 * TiB
    #: wall-clock limit of a job process; 0 = twice ``worker_cpu_seconds`` plus 60 s
    worker_wall_seconds: int = 0
    #: qemu-img read-rate limit in bytes/s for conversions (0 = none)
    convert_rate_limit_bytes: int = 0
    max_skew_seconds: int = 900
    #: Files larger than this need fast import (IMG-SIZE).
    normal_import_max_bytes: int = 128 * GiB
    #: Nothing larger than this is imported at all (IMG-SIZE).
    import_max_bytes: int = 1 * TiB
    token_lifetime_seconds: int = 24 * 3600
    #: CPU seconds the checker may spend on one image: a well-formed image of any size is
    #: checked in about a second, so more is itself a finding (IMG-SAFE)
    check_cpu_seconds: int = 20
    #: jobs of one project that run at the same time; 0: half the workers (at least one), so
    #: one project's slow or hostile jobs never hold every worker
    project_running_jobs: int = 0
    #: unfinished (INIT or RUNNING) jobs one project may have; more is refused (IMG.0194)
    project_job_limit: int = 20
    #: bytes of stored images (and of conversions under way) one project may hold (IMG.0015)
    project_storage_bytes: int = 1 * TiB
    #: bytes of bucket objects, unfinished multipart parts and staged Glance data one project
    #: may hold (S3 ``QuotaExceeded``)
    project_object_bytes: int = 1 * TiB
    #: free disk space a conversion must leave in the data dir, beyond its own bound
    free_space_reserve_bytes: int = 1 * GiB
    #: unfinished multipart uploads one project may have open (403 QuotaExceeded beyond; S3
    #: has no such limit, each one holds a folder, rows and parts on disk); 0: no limit
    project_open_uploads: int = 1000
    #: HTTP limits of both listeners (see the module docstring for the reasoning)
    http_max_url_bytes: int = 33 * KiB
    http_max_header_bytes: int = 32 * KiB
    http_head_timeout_seconds: int = 30
    http_body_timeout_seconds: int = 60
    #: 0: no cap
    http_max_connections: int = 512
    http_max_connections_per_client: int = 128

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
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.stored_format not in STORED_FORMATS:
        raise ValueError(f"stored_format must be one of {', '.join(STORED_FORMATS)}")
    if settings.image_quota < 0:
        raise ValueError("image_quota must be 0 (no limit) or more")
    for name in ("check_cpu_seconds", "project_job_limit"):
        if getattr(settings, name) < 1:
            raise ValueError(f"{name} must be 1 or more")
    for name in (
        "project_running_jobs",
        "project_storage_bytes",
        "project_object_bytes",
        "free_space_reserve_bytes",
        "project_open_uploads",
    ):
        if getattr(settings, name) < 0:
            raise ValueError(f"{name} must be 0 or more")
    for name in (
        "http_max_url_bytes",
        "http_max_header_bytes",
        "http_head_timeout_seconds",
        "http_body_timeout_seconds",
    ):
        if getattr(settings, name) < 1:
            raise ValueError(f"{name} must be 1 or more")
    for name in ("http_max_connections", "http_max_connections_per_client"):
        if getattr(settings, name) < 0:
            raise ValueError(f"{name} must be 0 (no limit) or more")
    return settings


def normal_domain(text: str) -> str | None:
    """``s3_domain`` lower-cased without a final dot; None when empty; ValueError when it is
    not a DNS name (labels of letters, digits and ``-``)."""
    name = text.strip().lower().removesuffix(".")
    if not name:
        return None
    if not _DOMAIN.match(name):
        raise ValueError(f"s3_domain {text[:80]!r} is not a DNS name like s3.example.com")
    return name
