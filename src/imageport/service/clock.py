"""Ids and timestamps in the vendor's shapes."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def time_text(when: datetime) -> str:
    """``2024-11-06T06:21:08.769Z``: UTC, milliseconds, fixed width (sorts as text)."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_time_text(text: str) -> datetime:
    """Inverse of :func:`time_text` (also accepts ISO forms without milliseconds)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def new_id() -> str:
    """32 lower-case hex characters (job ids, project ids, upload ids)."""
    return secrets.token_hex(16)


def new_uuid() -> str:
    """A UUID string (image ids, as Glance uses)."""
    return str(uuid.uuid4())
