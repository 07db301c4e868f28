"""The request facts a signature covers, and helpers shared by the three verifiers.

A :class:`SignedRequest` is what the HTTP layer hands to ``verify``: the method, the path and
query exactly as they came on the request line (still percent-encoded), the headers, and the
sha256 of the body when it has been read. Header values are text decoded from the wire as UTF-8
(both SDKs sign the UTF-8 bytes); a server that decodes header bytes as ISO-8859-1 must re-decode.

Everything here is untrusted: lengths are capped before anything is parsed, and every helper
raises only :class:`~imageport.auth.errors.SignatureError`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import MappingProxyType

from imageport.auth.errors import MALFORMED, MISMATCH, TOO_SKEWED, SignatureError

MAX_AUTHORIZATION = 8 * 1024
"""Longest Authorization value parsed (bytes of text)."""
MAX_SIGNED_HEADERS = 64
"""Most header names a SignedHeaders list may name."""
MAX_HEADER_VALUE = 8 * 1024
"""Longest value of a header that goes into a string to sign."""
MAX_PATH = 16 * 1024
"""Longest raw request path accepted for canonicalisation."""
MAX_QUERY = 16 * 1024
"""Longest raw query string accepted for canonicalisation."""
MAX_QUERY_PARAMS = 256
"""Most ``&``-separated query items accepted."""
MAX_DATE = 64
"""Longest date header value parsed."""

DEFAULT_MAX_SKEW = timedelta(minutes=15)
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_HEX = frozenset("0123456789abcdef")


def _lower_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> Mapping[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        # Repeated headers are joined with "," as both botocore and RFC 9110 do.
        out[key] = f"{out[key]},{value}" if key in out else value
    return MappingProxyType(out)


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """One HTTP request as seen by a signature verifier.

    ``headers`` may be given with any name case (or as ``(name, value)`` pairs); it is stored with
    lower-cased names, so ``request.header("X-Amz-Date")`` and ``request.headers["x-amz-date"]``
    both work. ``body_sha256`` is the lower-case hex sha256 of the body, or None when the body has
    not been read (streamed uploads): verifiers then rely on the signed payload-hash header.
    """

    method: str
    raw_path: str
    raw_query: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body_sha256: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _lower_headers(self.headers))

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
        return self.headers.get(name.lower())


def declares_body(request: SignedRequest) -> bool:
    """Whether ``request`` has a body: a known sha256 other than the empty body's, or else (the
    body not read yet) a Content-Length other than 0 or a framed (chunked) body, as HTTP says."""
    if request.body_sha256 is not None:
        return request.body_sha256 != EMPTY_SHA256
    length = request.header("content-length")
    if length is not None:
        return length.strip() != "0"
    return request.header("transfer-encoding") is not None


def header_of(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup in a plain mapping (used before a SignedRequest exists)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, val in headers.items():
        if key.lower() == wanted:
            return val
    return None


def utf8(text: str) -> bytes:
    """UTF-8 bytes of ``text``; never raises (lone surrogates pass through)."""
    return text.encode("utf-8", "surrogatepass")


def same(expected: str, given: str) -> bool:
    """Constant-time comparison of two signature strings (any characters)."""
    return hmac.compare_digest(utf8(expected), utf8(given))


def is_sha256_hex(value: str) -> bool:
    """True for exactly 64 lower-case hex digits."""
    return len(value) == 64 and _HEX.issuperset(value)


def capped(value: str | None, limit: int, what: str) -> str:
    """``value`` if present and at most ``limit`` characters, else a malformed-header error."""
    if value is None:
        raise SignatureError(MALFORMED, f"missing {what}")
    if len(value) > limit:
        raise SignatureError(MALFORMED, f"{what} longer than {limit} characters")
    return value


def parse_basic_date(value: str, what: str) -> datetime:
    """Parse ``YYYYMMDDTHHMMSSZ`` (X-Sdk-Date, X-Amz-Date) as an aware UTC datetime."""
    if (
        len(value) != 16
        or value[8] != "T"
        or value[15] != "Z"
        or not (
            value[:8].isascii()
            and value[:8].isdigit()
            and value[9:15].isascii()
            and value[9:15].isdigit()
        )
    ):
        raise SignatureError(MALFORMED, f"{what} is not YYYYMMDDTHHMMSSZ")
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise SignatureError(MALFORMED, f"{what} is not a valid date") from exc


def parse_http_date(value: str, what: str) -> datetime:
    """Parse an RFC 1123 date (the Date header) as an aware UTC datetime."""
    capped(value, MAX_DATE, what)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError) as exc:
        raise SignatureError(MALFORMED, f"{what} is not an HTTP date") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise SignatureError(MALFORMED, f"{what} is out of range") from exc


def check_skew(signed_at: datetime, now: datetime, max_skew: timedelta) -> None:
    """Refuse a request signed more than ``max_skew`` before or after ``now`` (naive = UTC)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if abs(now - signed_at) > max_skew:
        raise SignatureError(TOO_SKEWED, "request date is too far from the server time")


def query_items(raw_query: str) -> list[tuple[str, str | None]]:
    """Split a raw query into ``(name, value)`` pairs, still encoded; value None when no ``=``."""
    capped(raw_query, MAX_QUERY, "query string")
    parts = [p for p in raw_query.split("&", MAX_QUERY_PARAMS + 1) if p]
    if len(parts) > MAX_QUERY_PARAMS:
        raise SignatureError(MALFORMED, f"more than {MAX_QUERY_PARAMS} query parameters")
    out: list[tuple[str, str | None]] = []
    for part in parts:
        name, eq, value = part.partition("=")
        out.append((name, value if eq else None))
    return out


def split_auth_params(text: str) -> dict[str, str]:
    """Parse ``A=x, B=y,C=z`` into a dict; duplicate or empty names are malformed."""
    out: dict[str, str] = {}
    for raw in text.split(",", 8):
        part = raw.strip()
        name, eq, value = part.partition("=")
        if not eq or not name or name in out:
            raise SignatureError(MALFORMED, "Authorization parameters are not name=value pairs")
        out[name] = value
    return out


def signed_header_names(value: str) -> list[str]:
    """The names of a ``SignedHeaders=a;b;c`` list: lower-case, non-empty, at most 64."""
    names = value.split(";", MAX_SIGNED_HEADERS)
    if len(names) > MAX_SIGNED_HEADERS:
        raise SignatureError(MALFORMED, f"more than {MAX_SIGNED_HEADERS} signed headers")
    for name in names:
        if not name or name != name.lower() or len(name) > 128 or not name.isprintable():
            raise SignatureError(MALFORMED, "bad SignedHeaders list")
    return names


def canonical_headers(
    request: SignedRequest, names: list[str], normalize: Callable[[str], str]
) -> str:
    """``name:value\n`` for each signed header, values capped then ``normalize``d; a signed
    header missing from the request is a signature mismatch."""
    lines: list[str] = []
    for name in names:
        value = request.headers.get(name)
        if value is None:
            raise SignatureError(MISMATCH, f"signed header {name} is missing")
        lines.append(f"{name}:{normalize(capped(value, MAX_HEADER_VALUE, name))}\n")
    return "".join(lines)
