"""Hand-made image-API requests signed as the vendor's Python SDK signs them (its own
``Signer``, SDK-HMAC-SHA256), for the tests that replay, forge or tamper with a request: the test
holds the signed :class:`SdkRequest` and sends it, or a changed copy, itself."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer


def sdk_signed(
    base_url: str,
    access_key: str,
    secret_key: str,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    when: datetime | None = None,
) -> SdkRequest:
    """``method path`` to the service at ``base_url``, signed with the key at ``when`` (now by
    default). ``Content-Type: application/json`` makes the SDK sign the body's sha256 without
    sending it in a header; ``headers`` are added to (or replace) the SDK's own."""
    sent = {
        "Content-Type": "application/json;charset=utf-8",
        "X-Sdk-Date": (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ"),
        **(headers or {}),
    }
    req = SdkRequest(
        method=method,
        schema="http",
        host=base_url.split("//")[1],
        resource_path=path,
        query_params=[],
        header_params=sent,
        body=body,
    )
    Signer(SimpleNamespace(ak=access_key, sk=secret_key)).sign(req)
    return req
