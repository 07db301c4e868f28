"""CORS on the bucket API: one origin (the web console's) may upload parts from a browser, and
no other origin is ever allowed anything (:mod:`imageport.api.s3.cors`)."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from imageport.api.s3.app import build_s3_app
from imageport.api.s3.cors import ConsoleOrigin, Origin, host_name, parse_origin
from imageport.service.context import Services
from imageport.settings import load_settings, normal_origin
from support.server_process import running_app

PREFLIGHT = {"Access-Control-Request-Method": "PUT"}


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        ("http://127.0.0.1:8080", Origin("http", "127.0.0.1", 8080)),
        ("https://Console.Example.com", Origin("https", "console.example.com", 443)),
        ("http://[::1]:8080", Origin("http", "::1", 8080)),
        ("null", None),
        ("", None),
        ("file://", None),
        ("http://a.example/path", None),
        ("http://user@a.example", None),
        ("http://a.example:99999", None),
        ("javascript:alert(1)", None),
        ("http://a.example\n", None),
    ],
)
def test_origins_are_parsed_strictly(text: str, origin: Origin | None) -> None:
    assert parse_origin(text) == origin


@pytest.mark.parametrize(
    ("host", "name"),
    [("127.0.0.1:8081", "127.0.0.1"), ("[::1]:8081", "::1"), ("S3.Example.com.", "s3.example.com")],
)
def test_the_host_name_of_a_host_header(host: str, name: str) -> None:
    assert host_name(host) == name


def test_the_console_is_the_same_host_on_the_image_apis_port() -> None:
    console = ConsoleOrigin(console_port=8080)
    assert console.allows("http://127.0.0.1:8080", "127.0.0.1:8081")
    assert console.allows("https://s3.example.com:8080", "S3.example.com:8081")
    assert not console.allows("http://127.0.0.1:8081", "127.0.0.1:8081")  # the bucket API
    assert not console.allows("http://localhost:8080", "127.0.0.1:8081")  # another host name
    assert not console.allows("http://evil.example:8080", "127.0.0.1:8081")
    assert not console.allows(None, "127.0.0.1:8081")
    assert not ConsoleOrigin().allows("http://127.0.0.1:8080", "127.0.0.1:8081")  # port unknown


def test_the_setting_names_the_only_origin() -> None:
    console = ConsoleOrigin(console_port=8080, origin="https://console.example.com")
    assert console.allows("https://console.example.com", "obs.example.com")
    assert console.allows("https://console.example.com:443", "obs.example.com")
    assert not console.allows("http://console.example.com", "obs.example.com")
    assert not console.allows("http://obs.example.com:8080", "obs.example.com")


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("https://Console.Example.com/", "https://console.example.com"),
        ("http://10.0.0.5:8080", "http://10.0.0.5:8080"),
        ("", None),
    ],
)
def test_the_setting_is_an_origin(text: str, normal: str | None) -> None:
    assert normal_origin(text) == normal


@pytest.mark.parametrize("text", ["console.example.com", "https://c.example/console", "ftp://c"])
def test_a_setting_that_is_no_origin_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="console_origin"):
        load_settings({"IMAGEPORT_CONSOLE_ORIGIN": text})


def test_the_setting_opens_the_bucket_api_to_that_origin_only(services: Services) -> None:
    settings = dataclasses.replace(services.settings, console_origin="https://console.example.com")
    app = build_s3_app(dataclasses.replace(services, settings=settings))
    with running_app(app) as url:
        part = f"{url}/b/k?partNumber=1&uploadId=u"
        allowed = httpx.options(
            part, headers={"Origin": "https://console.example.com", **PREFLIGHT}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://console.example.com"
        assert allowed.headers["access-control-max-age"] == "600"
        assert allowed.headers["vary"] == "Origin"
        assert allowed.content == b""
        port = url.rsplit(":", 1)[1]
        for origin in ("https://evil.example", f"http://127.0.0.1:{port}"):
            refused = httpx.options(part, headers={"Origin": origin, **PREFLIGHT})
            assert refused.status_code == 403
            assert not [h for h in refused.headers if h.startswith("access-control-")]
