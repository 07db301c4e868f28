"""Hand-made bucket-API requests for the attack tests: SigV4-signed by botocore's signer
(every header signed) and sent as they are with httpx, so a test controls every byte; and the
S3 error code of a reply."""

from __future__ import annotations

import hashlib
import itertools
import re

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from support.server_process import Keys, ServeProcess

_NONCES = itertools.count()


def signed(
    server: ServeProcess,
    keys: Keys,
    method: str,
    path: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> httpx.Response:
    """A SigV4-signed bucket-API request of ``keys``' project, sent as it is."""
    url = f"{server.s3_url}{path}" + (f"?{query}" if query else "")
    if method == "POST" and query == "uploads":
        # a bucket-API POST is single-use and two identical initiates signed in the same second
        # would carry the same signature: a real client's come at different times
        headers = {**(headers or {}), "x-amz-meta-nonce": str(next(_NONCES))}
    request = AWSRequest(
        method=method,
        url=url,
        data=body,
        headers={**(headers or {}), "x-amz-content-sha256": hashlib.sha256(body).hexdigest()},
    )
    SigV4Auth(Credentials(keys.access_key, keys.secret_key), "s3", "local-1").add_auth(request)
    prepared = request.prepare()
    return httpx.request(
        method, prepared.url, headers=dict(prepared.headers.items()), content=body, timeout=30
    )


def error_code(reply: httpx.Response) -> tuple[int, str]:
    """(status, S3 error code) of a reply ("" when it has none)."""
    found = re.search(r"<Code>([^<]*)</Code>", reply.text)
    return reply.status_code, found.group(1) if found else ""
