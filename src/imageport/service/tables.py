"""The service's tables (SQLAlchemy Core), the single description of the database.

They live with the service, not under ``adapters/``: the use cases query them directly with
SQLAlchemy Core (see :mod:`imageport.service`), so they are part of the domain. What stays in
:mod:`imageport.adapters.db` is how a database is opened and migrated: the Alembic migrations
in ``adapters/db/migrations/versions`` create exactly these tables, and a test compares the
migrated database with this metadata so the two cannot drift. The same tables work on SQLite
(the embedded default) and PostgreSQL.

Conventions: ids are 32 lower-case hex characters (like the vendor's); times are text in the
vendor's form ``2024-11-06T06:21:08.769Z`` (UTC, fixed width, so they sort and compare as
text); JSON columns hold small documents (properties, tags, reports), never image bytes.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 32
TIME = 24

projects = Table(
    "projects",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", String(TIME), nullable=False),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key", String(40), primary_key=True),
    # The secret is needed in clear to verify HMAC signatures (as every AK/SK service does).
    Column("secret_key", String(64), nullable=False),
    Column("project_id", String(ID), ForeignKey("projects.id"), nullable=False),
    Column("created_at", String(TIME), nullable=False),
    Column("revoked_at", String(TIME)),
    Index("ix_access_keys_project_id", "project_id"),
)

tokens = Table(
    "tokens",
    metadata,
    # sha256 of the token: a database leak does not leak usable tokens
    Column("token_sha256", String(64), primary_key=True),
    Column("project_id", String(ID), ForeignKey("projects.id"), nullable=False),
    Column("access_key", String(40), nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_tokens_expires_at", "expires_at"),
)

used_signatures = Table(
    "used_signatures",
    metadata,
    # the replay memory (service/access/replay.py): a digest of a single-use request's signature,
    # kept until the signature expires, so that a copy is refused even after a restart
    Column("signature_digest", String(32), primary_key=True),
    Column("project_id", String(ID), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("bodiless", Boolean, nullable=False),
    Index("ix_used_signatures_expires_at", "expires_at"),
)

buckets = Table(
    "buckets",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("project_id", String(ID), ForeignKey("projects.id"), nullable=False),
    Column("storage_class", String(24), nullable=False),
    Column("location", String(64), nullable=False),
    Column("created_at", String(TIME), nullable=False),
)

objects = Table(
    "objects",
    metadata,
    Column("bucket", String(63), ForeignKey("buckets.name"), primary_key=True),
    Column("key", String(1024), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("etag", String(48), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("storage_class", String(24), nullable=False),
    Column("metadata", JSON, nullable=False),
    # file name of the data under Settings.objects_dir (never derived from the key)
    Column("blob", String(64), nullable=False),
    Column("created_at", String(TIME), nullable=False),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("bucket", String(63), ForeignKey("buckets.name"), nullable=False),
    Column("key", String(1024), nullable=False),
    Column("content_type", String(255), nullable=False),
    Column("storage_class", String(24), nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("created_at", String(TIME), nullable=False),
    # part size fixed by the first large part: part N may then be written in place at
    # (N-1)*stride in uploads/<id>/assembly; NULL until then
    Column("stride", BigInteger),
    Index("ix_uploads_bucket_key", "bucket", "key"),
)

parts = Table(
    "parts",
    metadata,
    Column("upload_id", String(ID), ForeignKey("uploads.id"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("etag", String(48), nullable=False),
    # file name of the part under Settings.uploads_dir/<upload_id>/
    Column("blob", String(64), nullable=False),
    Column("created_at", String(TIME), nullable=False),
    # NULL: the part is the whole file ``blob``; else its bytes start at this offset of
    # ``blob`` (the upload's assembly file, where parts are written in place)
    Column("offset", BigInteger),
)

images = Table(
    "images",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(ID), ForeignKey("projects.id"), nullable=False),
    Column("name", String(128), nullable=False),
    # queued | saving | active | killed | deleted
    Column("status", String(16), nullable=False),
    Column("visibility", String(16), nullable=False),
    Column("protected", Boolean, nullable=False),
    Column("container_format", String(16), nullable=False),
    Column("disk_format", String(16)),
    Column("min_disk", Integer, nullable=False),
    Column("min_ram", Integer, nullable=False),
    Column("max_ram", Integer),
    Column("size", BigInteger),
    Column("virtual_size", BigInteger),
    Column("checksum", String(64)),
    # the vendor's "__" extension properties and other string properties, as one JSON object
    Column("properties", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    # file name of the stored image under Settings.images_dir
    Column("blob", String(64)),
    # why the image was killed: the failing rule IDs and the job's error
    Column("error_code", String(32)),
    Column("fail_reason", Text),
    # the check report (imageport.check/1 JSON) of the job that made this image
    Column("report", JSON),
    Column("created_at", String(TIME), nullable=False),
    Column("updated_at", String(TIME), nullable=False),
    Column("active_at", String(TIME)),
    UniqueConstraint("project_id", "name", name="uq_images_project_name"),
)

image_members = Table(
    "image_members",
    metadata,
    # an image shared with another project (service/images/members.py): the owner adds the
    # member project, which accepts or rejects; deleting the image deletes its rows first
    Column("image_id", String(36), ForeignKey("images.id"), primary_key=True),
    Column("member_id", String(ID), ForeignKey("projects.id"), primary_key=True),
    # pending | accepted | rejected
    Column("status", String(16), nullable=False),
    Column("created_at", String(TIME), nullable=False),
    Column("updated_at", String(TIME), nullable=False),
    Index("ix_image_members_member_id", "member_id"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("project_id", String(ID), ForeignKey("projects.id"), nullable=False),
    Column("job_type", String(48), nullable=False),
    # INIT | RUNNING | SUCCESS | FAIL
    Column("status", String(16), nullable=False),
    Column("image_id", String(36)),
    # what the job works from: {"bucket":..,"key":..,"options":{...}}
    Column("params", JSON, nullable=False),
    # fetch | probe | check | configure | convert | recheck | verify | boot | store (current_task)
    Column("phase", String(24)),
    Column("percent", Float, nullable=False),
    Column("bytes_done", BigInteger, nullable=False),
    Column("bytes_total", BigInteger, nullable=False),
    Column("error_code", String(32)),
    Column("fail_reason", Text),
    Column("cancel_requested", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("begin_time", String(TIME), nullable=False),
    Column("end_time", String(TIME)),
    Index("ix_jobs_status", "status"),
)

servers = Table(
    "servers",
    metadata,
    # a server (service/servers/): a virtual machine made from an image, run by the ServerHost
    Column("id", String(36), primary_key=True),
    Column("project_id", String(ID), ForeignKey("projects.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("description", String(255), nullable=False),
    # BUILD | ACTIVE | SHUTOFF | REBOOT | HARD_REBOOT | ERROR | DELETED (the vendor's status,
    # derived from vm_state and task_state: service/servers/statuses.py)
    Column("status", String(16), nullable=False),
    Column("vm_state", String(16), nullable=False),
    Column("task_state", String(24)),
    # 0 NOSTATE, 1 RUNNING, 4 SHUTDOWN
    Column("power_state", Integer, nullable=False),
    Column("flavor_id", String(64), nullable=False),
    Column("vcpus", Integer, nullable=False),
    Column("memory_mib", Integer, nullable=False),
    # the image the server was made from; an image a server uses cannot be deleted
    Column("image_id", String(36), nullable=False),
    Column("disk_gib", Integer, nullable=False),
    # bios | uefi (the image's hw_firmware_type)
    Column("firmware", String(8), nullable=False),
    Column("key_name", String(64)),
    Column("metadata", JSON, nullable=False),
    Column("availability_zone", String(64), nullable=False),
    Column("mac", String(17), nullable=False),
    # loopback port forwarded to the guest's SSH while it runs
    Column("ssh_port", Integer),
    # {"code": .., "message": ..} of the last failure (ShowServer's fault), else NULL
    Column("fault", JSON),
    Column("created_at", String(TIME), nullable=False),
    Column("updated_at", String(TIME), nullable=False),
    Column("launched_at", String(TIME)),
    Column("deleted_at", String(TIME)),
    Index("ix_servers_project_id", "project_id"),
    Index("ix_servers_image_id", "image_id"),
)

keypairs = Table(
    "keypairs",
    metadata,
    # an SSH key pair of a project (the Nova os-keypairs API); only the public key is kept
    Column("project_id", String(ID), ForeignKey("projects.id"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("public_key", Text, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    # ssh | x509
    Column("key_type", String(8), nullable=False),
    Column("created_at", String(TIME), nullable=False),
)

__all__ = [
    "access_keys",
    "buckets",
    "image_members",
    "images",
    "jobs",
    "keypairs",
    "metadata",
    "objects",
    "parts",
    "projects",
    "servers",
    "tokens",
    "uploads",
    "used_signatures",
]
