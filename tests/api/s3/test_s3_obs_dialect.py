"""esdk-obs-python in its own OBS dialect, against the bucket API served with ``s3_domain``.

The SDK signs ``OBS ak:sig`` with ``x-obs-*`` headers only for a DNS-named server in
virtual-host mode (``Host: <bucket>.obs.test``, path ``/key``), after an unauthenticated
``HEAD /?apiversion`` probe answered ``x-obs-api: 3.0`` (as captured from the SDK). It cannot
resolve ``obs.test``, so it reaches the real uvicorn through ``tests/support/connect_proxy.py``. The
unit tests at the end pin how :func:`parse_call` reads the Host header.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from obs import (
    CreateBucketHeader,
    GetObjectHeader,
    ObsClient,
    PutObjectHeader,
    UploadFileHeader,
)
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from imageport.api.s3.app import build_s3_app
from imageport.api.s3.request import MAX_HOST, parse_call
from imageport.cli.main import main
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid
from imageport.settings import load_settings
from support import s3_server, service_fixtures
from support.connect_proxy import ConnectProxy
from support.server_process import running_app

DOMAIN = "obs.test"
MiB = 1024 * 1024
PART = 5 * MiB


class Recorder:
    """ASGI wrapper that keeps ``(method, Host, Authorization)`` of every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[tuple[str, str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            self.seen.append(
                (scope["method"], headers.get("host", ""), headers.get("authorization", ""))
            )
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class Served:
    """The bucket API on uvicorn, the proxy in front of it, and what it saw."""

    url: str
    proxy: ConnectProxy
    recorder: Recorder
    creds: s3_server.Credentials

    def client(self, secret: str | None = None) -> Any:
        return ObsClient(
            access_key_id=self.creds.access_key,
            secret_access_key=secret or self.creds.secret_key,
            server=f"http://{DOMAIN}:80",
            proxy_host="127.0.0.1",
            proxy_port=self.proxy.port,
        )


@pytest.fixture
def obs_services(tmp_path: Path) -> Iterator[Services]:
    made = service_fixtures.make_services(tmp_path / "data", s3_domain=DOMAIN)
    yield made
    made.db.dispose()


@pytest.fixture
def served(obs_services: Services) -> Iterator[Served]:
    recorder = Recorder(build_s3_app(obs_services))
    creds = s3_server.new_credentials(obs_services, "alpha")
    with running_app(recorder) as url, ConnectProxy(int(url.rsplit(":", 1)[1])) as proxy:
        yield Served(url, proxy, recorder, creds)


def _ok(response: Any, what: str) -> Any:
    assert response.status < 300, (
        f"{what}: {response.status} {response.errorCode} {response.errorMessage}"
    )
    return response.body


def test_obs_dialect_bucket_files_and_reads(
    served: Served, obs_services: Services, tmp_path: Path
) -> None:
    small = tmp_path / "notes.txt"
    small.write_bytes(b"hello\n")
    big = tmp_path / "disk.qcow2"
    data = os.urandom(15_000_000)
    big.write_bytes(data)
    obs = served.client()
    try:
        _ok(
            obs.createBucket(
                "images", header=CreateBucketHeader(storageClass="WARM"), location="local-1"
            ),
            "createBucket",
        )  # the region served
        bucket = _ok(obs.getBucketMetadata("images"), "getBucketMetadata")
        assert bucket.storageClass == "WARM"
        _ok(
            obs.putFile(
                "images",
                "notes.txt",
                str(small),
                metadata={"purpose": "demo"},
                headers=PutObjectHeader(storageClass="COLD"),
            ),
            "putFile",
        )
        _ok(
            obs.putObject(
                "images",
                "disk/read me+1.txt",
                "text",
                metadata={"a": "b"},
                headers=PutObjectHeader(storageClass="COLD"),
            ),
            "putObject",
        )
        _ok(
            obs.uploadFile(
                "images",
                "disk/disk.qcow2",
                str(big),
                partSize=PART,
                taskNum=3,
                metadata={"os": "debian"},
                headers=UploadFileHeader(storageClass="WARM"),
            ),
            "uploadFile",
        )

        disk = obs.getObjectMetadata("images", "disk/disk.qcow2")
        meta = _ok(disk, "getObjectMetadata")
        assert meta.contentLength == len(data)
        assert meta.storageClass == "WARM"  # not STANDARD_IA: the OBS spelling
        assert meta.etag.strip('"').endswith("-3")
        assert ("os", "debian") in disk.header  # the SDK strips x-obs-meta-
        notes = obs.getObjectMetadata("images", "notes.txt")
        assert _ok(notes, "getObjectMetadata").storageClass == "COLD"
        assert ("purpose", "demo") in notes.header

        listing = _ok(obs.listObjects("images", prefix="disk/", max_keys=100), "listObjects")
        assert [(o.key, o.storageClass) for o in listing.contents] == [
            ("disk/disk.qcow2", "WARM"),
            ("disk/read me+1.txt", "COLD"),
        ]

        head = _ok(
            obs.getObject(
                "images",
                "disk/disk.qcow2",
                loadStreamInMemory=True,
                headers=GetObjectHeader(range="1000-2023"),
            ),
            "ranged getObject",
        )
        assert head.buffer == data[1000:2024]
        whole = _ok(
            obs.getObject("images", "disk/disk.qcow2", loadStreamInMemory=True), "getObject"
        )
        assert hashlib.sha256(whole.buffer).digest() == hashlib.sha256(data).digest()

        for key in ("notes.txt", "disk/read me+1.txt", "disk/disk.qcow2"):
            _ok(obs.deleteObject("images", key), "deleteObject")
        _ok(obs.deleteBucket("images"), "deleteBucket")
        assert obs_services.store.get_bucket("images") is None
    finally:
        obs.close()

    # every signed request was virtual-host style and OBS-signed, through the tunnel
    signed = [(host, auth) for _, host, auth in served.recorder.seen if auth]
    assert len(signed) >= 14
    assert {auth.split(" ", 1)[0] for _, auth in signed} == {"OBS"}
    assert {host for host, _ in signed} == {f"images.{DOMAIN}"}
    assert set(served.proxy.connects) <= {f"{DOMAIN}:80", f"images.{DOMAIN}:80"}


def test_obs_dialect_wrong_secret_is_refused(served: Served, obs_services: Services) -> None:
    obs = served.client()
    wrong = served.client(secret="x" * 40)
    try:
        _ok(obs.createBucket("images"), "createBucket")
        refused = wrong.listObjects("images")
        assert (refused.status, refused.errorCode) == (403, "SignatureDoesNotMatch")
        assert wrong.createBucket("other").status == 403
        assert obs_services.store.get_bucket("other") is None
    finally:
        obs.close()
        wrong.close()
    assert served.recorder.seen[-1][2].startswith("OBS ")


@pytest.mark.parametrize(("signature", "scheme"), [("v4", "AWS4-HMAC-SHA256"), ("v2", "AWS")])
def test_aws_signatures_work_virtual_host_style(
    served: Served, signature: str, scheme: str
) -> None:
    obs = ObsClient(
        access_key_id=served.creds.access_key,
        secret_access_key=served.creds.secret_key,
        server=f"http://{DOMAIN}:80",
        proxy_host="127.0.0.1",
        proxy_port=served.proxy.port,
        signature=signature,
        is_signature_negotiation=False,
    )  # else the probe picks OBS
    try:
        _ok(obs.createBucket("images"), "createBucket")
        _ok(obs.putObject("images", "a b/c+d", "x"), "putObject")
        got = _ok(obs.getObject("images", "a b/c+d", loadStreamInMemory=True), "getObject")
        assert got.buffer == b"x"
    finally:
        obs.close()
    hosts = {host for _, host, auth in served.recorder.seen if auth.startswith(f"{scheme} ")}
    assert hosts == {f"images.{DOMAIN}"}


def test_virtual_host_probe_and_error_resource(served: Served) -> None:
    host = {"Host": f"images.{DOMAIN}:80"}
    probe = httpx.head(f"{served.url}/?apiversion", headers=host)
    assert (probe.status_code, probe.headers["x-obs-api"]) == (200, "3.0")
    denied = httpx.get(f"{served.url}/disk/a.qcow2", headers=host)
    assert denied.status_code == 403
    assert "<Resource>/images/disk/a.qcow2</Resource>" in denied.text
    bad = httpx.get(f"{served.url}/k", headers={"Host": f"Bad_Name.{DOMAIN}"})
    assert bad.status_code == 400 and "<Code>InvalidBucketName</Code>" in bad.text


# -- parse_call ------------------------------------------------------------------------------


def _request(host: str, path: str, query: str = "", method: str = "GET") -> Request:
    return Request(
        {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": [(b"host", host.encode())],
        }
    )


@pytest.mark.parametrize(
    ("host", "path", "bucket", "key", "virtual"),
    [
        ("images.obs.test", "/disk/a.qcow2", "images", "disk/a.qcow2", "images"),
        ("Images.OBS.test:8081", "/", "images", "", "images"),
        ("my.images.obs.test", "/a", "my.images", "a", "my.images"),
        ("images.obs.test", "//a", "images", "/a", "images"),
        ("obs.test", "/images/a", "images", "a", None),
        ("127.0.0.1:8081", "/images/a", "images", "a", None),
        ("images.example.com", "/images/a", "images", "a", None),
        ("images.obs.test.evil", "/images/a", "images", "a", None),
        ("[::1]:8081", "/images/a", "images", "a", None),
    ],
)
def test_parse_call_reads_the_bucket_from_the_host(
    host: str, path: str, bucket: str, key: str, virtual: str | None
) -> None:
    call = parse_call(_request(host, path), DOMAIN)
    assert (call.bucket, call.key, call.virtual_bucket) == (bucket, key, virtual)
    expected = f"/{virtual}{path}" if virtual else path
    assert call.resource == expected


def test_parse_call_without_a_domain_is_path_style() -> None:
    call = parse_call(_request("images.obs.test", "/disk/a"))
    assert (call.bucket, call.key, call.virtual_bucket) == ("disk", "a", None)
    assert parse_call(_request("x" * 5000, "/b/k")).bucket == "b"


def test_parse_call_apiversion_probe_is_bucket_level() -> None:
    call = parse_call(_request("images.obs.test", "/", "apiversion", "HEAD"), DOMAIN)
    assert (call.bucket, call.key, call.has("apiversion")) == ("images", "", True)


def test_parse_call_refuses_long_hosts_and_bad_bucket_labels() -> None:
    long_host = "a" * (MAX_HOST - len(DOMAIN)) + "." + DOMAIN
    with pytest.raises(RequestInvalid, match="Host"):
        parse_call(_request(long_host, "/k"), DOMAIN)
    with pytest.raises(RequestInvalid) as bad:
        parse_call(_request(f"ab.{DOMAIN}", "/k"), DOMAIN)
    assert bad.value.code == "InvalidBucketName"


# -- the setting -----------------------------------------------------------------------------


def test_s3_domain_setting_is_normalised_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_settings({}).s3_domain is None
    assert load_settings({"IMAGEPORT_S3_DOMAIN": "OBS.Test."}).s3_domain == "obs.test"
    assert load_settings({"IMAGEPORT_S3_DOMAIN": ""}).s3_domain is None
    assert (
        load_settings({"IMAGEPORT_S3_DOMAIN": "a.b"}, s3_domain="s3.local").s3_domain == "s3.local"
    )
    for bad in ("obs_test", "-obs.test", "obs..test", "a" * 181):
        with pytest.raises(ValueError, match="s3_domain"):
            load_settings({}, s3_domain=bad)
    # the serve flag is checked before anything starts
    assert main(["serve", "--s3-domain", "http://obs.test"]) == 2
    assert "s3_domain" in capsys.readouterr().err
