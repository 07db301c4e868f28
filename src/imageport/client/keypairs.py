"""A client of the server API's key pair routes (Nova ``os-keypairs``), served on the image API's
endpoint and signed the same way (SDK-HMAC-SHA256).

Only what ``imageport keypair`` needs: create (generate, or import a public key), list (every
page), show and delete. Error replies are decoded as the image API's
(:func:`~imageport.client.ims.ims_error`: the top-level ``error_code``/``error_msg``): the
client is an :class:`~imageport.client.ims.ImsClient` with the key pair paths.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from imageport.client.errors import ClientError
from imageport.client.ims import ImsClient

PAGE = 100
"""Key pairs asked for per page when listing."""
OK = (200, 204)
"""The statuses a key pair reply may have (Nova answers 200, a delete 204)."""


class KeypairClient(ImsClient):
    """Key pair calls to one endpoint for ``credentials`` (project id required); the signing,
    transport and JSON decoding are the image client's."""

    @property
    def base(self) -> str:
        return f"/v2.1/{quote(self.credentials.project_id, safe='')}/os-keypairs"

    def _path(self, name: str) -> str:
        return f"{self.base}/{quote(name, safe='')}"

    def create_keypair(self, name: str, public_key: str | None = None) -> dict[str, Any]:
        """``POST .../os-keypairs``: the key pair; with no ``public_key`` the service makes one
        and the answer holds its ``private_key`` (the only time it is shown)."""
        option: dict[str, str] = {"name": name, "type": "ssh"}
        if public_key is not None:
            option["public_key"] = public_key
        return _keypair(self._call("POST", self.base, {"keypair": option}, ok=OK))

    def list_keypairs(self) -> list[dict[str, Any]]:
        """``GET .../os-keypairs`` page by page (``limit``/``marker``): every key pair."""
        found: list[dict[str, Any]] = []
        marker: str | None = None
        while True:
            query = f"?limit={PAGE}" + (f"&marker={quote(marker, safe='')}" if marker else "")
            items = self._call("GET", self.base + query, ok=OK).get("keypairs")
            if not isinstance(items, list):
                raise ClientError("the key pair list reply has no 'keypairs' list")
            page = [_keypair(item) for item in items if isinstance(item, dict)]
            found += page
            if len(page) < PAGE:
                return found
            marker = str(page[-1].get("name", ""))

    def show_keypair(self, name: str) -> dict[str, Any]:
        """``GET .../os-keypairs/{name}``."""
        return _keypair(self._call("GET", self._path(name), ok=OK))

    def delete_keypair(self, name: str) -> None:
        """``DELETE .../os-keypairs/{name}`` (204)."""
        self._call("DELETE", self._path(name), ok=OK)


def _keypair(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``keypair`` object a reply (or a list item) wraps."""
    inner = doc.get("keypair")
    if not isinstance(inner, dict):
        raise ClientError("the reply has no 'keypair' object")
    return inner
