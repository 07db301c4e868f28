"""A client of the server API's key pair routes (Nova ``os-keypairs``), served on the image API's
endpoint and signed the same way (SDK-HMAC-SHA256).

Only what ``imageport keypair`` needs: create (generate, or import a public key), list (every
page), show and delete. Error replies are decoded as the image API's
(:func:`~imageport.client.ims.ims_error`: the top-level ``error_code``/``error_msg``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from imageport.client.errors import ClientError
from imageport.client.ims import JSON_TYPE, ims_error
from imageport.client.signing import Credentials, sdk_hmac_headers
from imageport.client.transport import Signer, Timeouts, Transport

PAGE = 100
"""Key pairs asked for per page when listing."""


class KeypairClient:
    """Key pair calls to one endpoint for ``credentials`` (project id required)."""

    def __init__(
        self, endpoint: str, credentials: Credentials, *, timeouts: Timeouts | None = None
    ) -> None:
        if not credentials.project_id:
            raise ClientError("the key pair API needs a project id")
        self.credentials = credentials
        self.transport = Transport(endpoint, ims_error, timeouts=timeouts, pool=2)
        self.base = f"/v2.1/{quote(credentials.project_id, safe='')}/os-keypairs"

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> KeypairClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, doc: object = None) -> dict[str, Any]:
        body = b"" if doc is None else json.dumps(doc).encode()
        ctype = JSON_TYPE if doc is not None else "application/json"

        def sign(m: str, url: str, headers: dict[str, str]) -> dict[str, str]:
            return sdk_hmac_headers(m, url, headers, body, self.credentials)

        signer: Signer = sign
        reply = self.transport.send(
            method, path, signer, headers={"Content-Type": ctype}, body=body, ok=(200, 204)
        )
        if not reply.body.strip():
            return {}
        try:
            doc = json.loads(reply.body)
        except ValueError as exc:
            raise ClientError(f"the reply to {method} {path} is not JSON") from exc
        if not isinstance(doc, dict):
            raise ClientError(f"the reply to {method} {path} is not a JSON object")
        return doc

    def _path(self, name: str) -> str:
        return f"{self.base}/{quote(name, safe='')}"

    def create_keypair(self, name: str, public_key: str | None = None) -> dict[str, Any]:
        """``POST .../os-keypairs``: the key pair; with no ``public_key`` the service makes one
        and the answer holds its ``private_key`` (the only time it is shown)."""
        option: dict[str, str] = {"name": name, "type": "ssh"}
        if public_key is not None:
            option["public_key"] = public_key
        return _keypair(self._call("POST", self.base, {"keypair": option}))

    def list_keypairs(self) -> list[dict[str, Any]]:
        """``GET .../os-keypairs`` page by page (``limit``/``marker``): every key pair."""
        found: list[dict[str, Any]] = []
        marker: str | None = None
        while True:
            query = f"?limit={PAGE}" + (f"&marker={quote(marker, safe='')}" if marker else "")
            items = self._call("GET", self.base + query).get("keypairs")
            if not isinstance(items, list):
                raise ClientError("the key pair list reply has no 'keypairs' list")
            page = [_keypair(item) for item in items if isinstance(item, dict)]
            found += page
            if len(page) < PAGE:
                return found
            marker = str(page[-1].get("name", ""))

    def show_keypair(self, name: str) -> dict[str, Any]:
        """``GET .../os-keypairs/{name}``."""
        return _keypair(self._call("GET", self._path(name)))

    def delete_keypair(self, name: str) -> None:
        """``DELETE .../os-keypairs/{name}`` (204)."""
        self._call("DELETE", self._path(name))


def _keypair(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``keypair`` object a reply (or a list item) wraps."""
    inner = doc.get("keypair")
    if not isinstance(inner, dict):
        raise ClientError("the reply has no 'keypair' object")
    return inner
