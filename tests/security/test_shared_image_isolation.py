"""Project isolation of shared images, against a real ``imageport serve`` with two projects.

alpha imports a real image (boto3 upload, the vendor SDK's CreateImage, the server's worker)
and shares it with beta through the SDK. Every image route is then tried as beta, at each step
of the share's life:

* before it is shared, after beta rejects it, after alpha removes beta, after alpha deletes
  the image: every route answers 404 ``IMG.NOT_FOUND`` as for an image that does not exist
  (the batch member routes: a FAIL job with that code), and no list holds it; a rejected
  member keeps only its own membership (to accept later);
* pending or accepted: beta may show the image and read its report (and, accepted, copy it);
  every change is refused ``IMG.0092`` (403) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from huaweicloudsdkims.v2 import model as m

from support import import_fixtures
from support.e2e_clients import ims_client, s3_client, token_for, wait_job
from support.server_process import Keys, ServeProcess, serve_process

# the SDK marks ShowJob deprecated but still sends it
pytestmark = pytest.mark.filterwarnings(
    "ignore:Method '.*' of ImsClient is deprecated:DeprecationWarning"
)

NOT_FOUND = (404, "IMG.NOT_FOUND")
NOT_OWNER = (403, "IMG.0092")
OK = (200, "")
GLANCE_DIRECT = {"name": "glance-direct"}
IN_BUCKET = "beta-in:disk.qcow2"
_TOKENS: dict[tuple[str, str], str] = {}


def token(server: ServeProcess, keys: Keys) -> str:
    """One token per project and server (asking for one per request made the test slow)."""
    at = (server.ims_url, keys.access_key)
    if at not in _TOKENS:
        _TOKENS[at] = token_for(server, keys)
    return _TOKENS[at]


@dataclass(frozen=True)
class Probe:
    """One request beta makes against the image: name, method, path, JSON body or data."""

    name: str
    method: str
    path: str
    json: object = None
    data: bytes | None = None
    content_type: str | None = None


def probes(image_id: str, alpha: str, beta: str) -> list[Probe]:
    """Every route that names an image (``{image_id}`` filled in)."""
    patch = [{"op": "replace", "path": "/name", "value": "taken-over"}]
    tags = f"/v2/{beta}/images/{image_id}/tags"
    members = f"/v2/images/{image_id}/members"
    return [
        Probe("show", "GET", f"/v2/images/{image_id}"),
        Probe("report", "GET", f"/v1/cloudimages/{image_id}/report"),
        Probe("update", "PATCH", f"/v2/cloudimages/{image_id}", patch, None, "application/json"),
        Probe(
            "glance update",
            "PATCH",
            f"/v2/images/{image_id}",
            patch,
            None,
            "application/openstack-images-v2.1-json-patch",
        ),
        Probe("download", "GET", f"/v2/images/{image_id}/file"),
        Probe(
            "upload", "PUT", f"/v2/images/{image_id}/file", None, b"x", "application/octet-stream"
        ),
        Probe(
            "stage", "PUT", f"/v2/images/{image_id}/stage", None, b"x", "application/octet-stream"
        ),
        Probe(
            "import", "POST", f"/v2/images/{image_id}/import", {"method": {"name": "glance-direct"}}
        ),
        Probe(
            "register",
            "PUT",
            f"/v1/cloudimages/{image_id}/upload",
            {"image_url": "beta-in:k.qcow2"},
        ),
        Probe(
            "export",
            "POST",
            f"/v1/cloudimages/{image_id}/file",
            {"bucket_url": "beta-out:x.qcow2", "file_format": "qcow2"},
        ),
        Probe("list tags", "GET", tags),
        Probe("add tag", "POST", tags, {"tag": {"key": "k", "value": "v"}}),
        Probe(
            "tag batch", "POST", f"{tags}/action", {"action": "delete", "tags": [{"key": "env"}]}
        ),
        Probe("delete tag", "DELETE", f"{tags}/env"),
        Probe("add member", "POST", members, {"member": beta}),
        Probe("remove member", "DELETE", f"{members}/{beta}"),
        Probe("delete", "DELETE", f"/v2/images/{image_id}"),
    ]


MEMBERSHIP = ("list members", "show own membership")
"""The routes on beta's own membership (as a member, in any status, it may read its share)."""


def call(server: ServeProcess, keys: Keys, probe: Probe) -> tuple[int, str]:
    headers = {"X-Auth-Token": token(server, keys)}
    if probe.content_type:
        headers["Content-Type"] = probe.content_type
    reply = httpx.request(
        probe.method,
        server.ims_url + probe.path,
        json=probe.json,
        content=probe.data,
        headers=headers,
        timeout=30,
    )
    if reply.status_code < 300:
        return reply.status_code, ""
    doc = reply.json()
    return reply.status_code, str(doc.get("error_code") or doc["error"]["code"])


def batch(server: ServeProcess, keys: Keys, method: str, body: object) -> tuple[str, str | None]:
    """A batch member route as ``keys``: (status, error_code) of its job."""
    auth = {"X-Auth-Token": token(server, keys)}
    reply = httpx.request(
        method, f"{server.ims_url}/v1/cloudimages/members", json=body, headers=auth, timeout=30
    )
    assert reply.status_code == 200, reply.text
    job = httpx.get(
        f"{server.ims_url}/v1/{keys.project_id}/jobs/{reply.json()['job_id']}",
        headers=auth,
        timeout=30,
    ).json()
    return job["status"], job["error_code"]


def listed(server: ServeProcess, keys: Keys, query: str = "") -> list[str]:
    auth = {"X-Auth-Token": token(server, keys)}
    found = []
    for path in ("/v2/cloudimages", "/v2/images"):
        reply = httpx.get(f"{server.ims_url}{path}{query}", headers=auth, timeout=30)
        assert reply.status_code == 200, reply.text
        found += [i["id"] for i in reply.json()["images"]]
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(tmp_path_factory.mktemp("shared-isolation")) as started:
        yield started


@pytest.fixture(scope="module")
def image_id(server: ServeProcess) -> str:
    alpha = server.keys["alpha"]
    s3 = s3_client(server, alpha)
    s3.create_bucket(Bucket="alpha-shared")
    s3.upload_file(str(import_fixtures.good_image("qcow2")), "alpha-shared", "guest.qcow2")
    client = ims_client(server, alpha)
    body = m.CreateImageRequestBody(
        name="to-share", image_url="alpha-shared:guest.qcow2", min_disk=40, is_config=False
    )
    job = wait_job(client, client.create_image(m.CreateImageRequest(body=body)).job_id)
    assert job.status == "SUCCESS", job.fail_reason
    return str(job.entities.image_id)


def sweep(server: ServeProcess, image_id: str) -> dict[str, tuple[int, str]]:
    alpha, beta = server.keys["alpha"], server.keys["beta"]
    answers = {
        p.name: call(server, beta, p) for p in probes(image_id, alpha.project_id, beta.project_id)
    }
    members = f"/v2/images/{image_id}/members"
    answers["list members"] = call(server, beta, Probe("list members", "GET", members))
    answers["show own membership"] = call(
        server, beta, Probe("show own membership", "GET", f"{members}/{beta.project_id}")
    )
    return answers


def unseen(server: ServeProcess, image_id: str, *, member: bool = False) -> None:
    """beta gets 404 for every route (``member``: except its own membership) and no list
    holds the image; the batch routes fail IMG.NOT_FOUND."""
    beta = server.keys["beta"]
    expected = {name: NOT_FOUND for name in sweep(server, image_id)}
    if member:
        expected.update({name: OK for name in MEMBERSHIP})
    assert sweep(server, image_id) == expected
    for query in ("", "?member_status=accepted", "?member_status=pending", "?__imagetype=shared"):
        assert image_id not in listed(server, beta, query), query
    share_on = {"images": [image_id], "projects": [server.keys["alpha"].project_id]}
    assert batch(server, beta, "POST", share_on) == ("FAIL", "IMG.NOT_FOUND")
    assert batch(server, beta, "DELETE", share_on) == ("FAIL", "IMG.NOT_FOUND")


def test_a_shared_image_is_seen_only_by_its_members(server: ServeProcess, image_id: str) -> None:
    alpha, beta = server.keys["alpha"], server.keys["beta"]
    accept = {"images": [image_id], "project_id": beta.project_id, "status": "accepted"}
    unseen(server, image_id)
    assert batch(server, beta, "PUT", accept) == ("FAIL", "IMG.NOT_FOUND")

    share = {"images": [image_id], "projects": [beta.project_id]}
    assert batch(server, alpha, "POST", share) == ("SUCCESS", None)
    member_view = {
        name: (OK if name in ("show", "report", *MEMBERSHIP) else NOT_OWNER)
        for name in sweep(server, image_id)
    }
    assert sweep(server, image_id) == member_view
    assert image_id in listed(server, beta, "?member_status=pending")
    assert image_id not in listed(server, beta)
    copy = Probe("copy", "POST", f"/v1/cloudimages/{image_id}/copy", {"name": "beta-copy"})
    assert call(server, beta, copy) == NOT_OWNER  # not accepted yet

    assert batch(server, beta, "PUT", accept) == ("SUCCESS", None)
    assert sweep(server, image_id) == member_view
    assert image_id in listed(server, beta) and image_id in listed(
        server, beta, "?__imagetype=shared"
    )
    shown = httpx.get(
        f"{server.ims_url}/v2/images/{image_id}",
        headers={"X-Auth-Token": token(server, beta)},
        timeout=30,
    ).json()
    assert (shown["visibility"], shown["__imagetype"], shown["name"]) == (
        "shared",
        "shared",
        "to-share",  # none of the refused changes went through
    )
    copied = httpx.post(
        f"{server.ims_url}{copy.path}",
        json=copy.json,
        headers={"X-Auth-Token": token(server, beta)},
        timeout=30,
    )
    assert copied.status_code == 200, copied.text
    done = wait_job(ims_client(server, beta), copied.json()["job_id"])
    assert done.status == "SUCCESS", done.fail_reason
    assert done.entities.image_id in listed(server, beta, "?__imagetype=private")

    reject = {**accept, "status": "rejected"}
    assert batch(server, beta, "PUT", reject) == ("SUCCESS", None)
    unseen(server, image_id, member=True)
    assert image_id in listed(server, beta, "?member_status=rejected")

    assert batch(server, alpha, "DELETE", share) == ("SUCCESS", None)
    unseen(server, image_id)
    assert image_id not in listed(server, beta, "?member_status=rejected")

    # shared again and accepted, then the owner deletes the image: nothing of it is left
    assert batch(server, alpha, "POST", share) == ("SUCCESS", None)
    assert batch(server, beta, "PUT", accept) == ("SUCCESS", None)
    gone = httpx.delete(
        f"{server.ims_url}/v2/images/{image_id}",
        headers={"X-Auth-Token": token(server, alpha)},
        timeout=30,
    )
    assert gone.status_code == 204, gone.text
    unseen(server, image_id)
    assert batch(server, beta, "PUT", accept) == ("FAIL", "IMG.NOT_FOUND")
