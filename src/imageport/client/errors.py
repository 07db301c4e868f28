"""What the client raises: :class:`ClientError`, a request failed (connection, timeout, or the
server said no), and its :class:`ConfigError`, a setting is missing or the config file is
unusable. Their place in the tree is drawn in :mod:`imageport.errors`.

A :class:`ClientError` from a server reply carries the HTTP ``status``, the server's ``code``
and ``message`` (from the IMS JSON body or the S3 XML body) and its ``request_id``, and prints
as one line a user can quote in a bug report. ``status`` is 0 when no reply came.
"""

from __future__ import annotations

from imageport.errors import ImageportError


class ClientError(ImageportError):
    """A request to the service failed; see the module docstring for the fields."""

    def __init__(
        self, message: str, *, status: int = 0, code: str = "", request_id: str = ""
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        text = f"{code}: {message}" if code else message
        if status:
            text = f"HTTP {status} {text}"
        if request_id:
            text = f"{text} (request id {request_id})"
        super().__init__(text)


class ConfigError(ClientError):
    """A setting the command needs is not given, or the config file cannot be used."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
