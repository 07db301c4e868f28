"""The vendor's unmodified SDK clients (``huaweicloudsdkims``, ``huaweicloudsdkecs``) for one
access key on a test server, and the projects with keys that the API tests sign as.

Every SDK-driven API test builds its clients here, so they all sign the same way: the key's
AK/SK, and its own project id unless a test means to send another one (a path or an
``X-Project-Id`` naming a project the key does not own). A test module's ``Api`` (the server
it started and the keys it signs with) extends :class:`ImsApi` or :class:`EcsApi`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkecs.v2 import EcsClient
from huaweicloudsdkims.v2 import ImsClient

from imageport.service.access.projects import AccessKey, create_key, create_project
from imageport.service.context import Services


class SigningKey(Protocol):
    """An access key and its project (an :class:`AccessKey`, or a serve process's keys)."""

    @property
    def access_key(self) -> str: ...
    @property
    def secret_key(self) -> str: ...
    @property
    def project_id(self) -> str: ...


def credentials(key: SigningKey, project_id: str | None = None) -> BasicCredentials:
    """The SDK's credentials for ``key``, sent with ``project_id`` (the key's own by default)."""
    return BasicCredentials(key.access_key, key.secret_key, project_id or key.project_id)


def ims_client(base: str, key: SigningKey, project_id: str | None = None) -> ImsClient:
    """The SDK's IMS client for ``key`` on the image API at ``base``."""
    cred = credentials(key, project_id)
    return ImsClient.new_builder().with_credentials(cred).with_endpoint(base).build()


def ecs_client(base: str, key: SigningKey, project_id: str | None = None) -> EcsClient:
    """The SDK's ECS client for ``key`` on the server API at ``base`` (the image API's
    endpoint: it serves both)."""
    cred = credentials(key, project_id)
    return EcsClient.new_builder().with_credentials(cred).with_endpoint(base).build()


@dataclass
class SdkApi:
    """A test server at ``base`` over ``services``, and a key of each of two projects."""

    base: str
    services: Services
    alpha: AccessKey
    beta: AccessKey


class ImsApi(SdkApi):
    """:class:`SdkApi` whose tests drive the image API."""

    def client(self, key: SigningKey, project_id: str | None = None) -> ImsClient:
        return ims_client(self.base, key, project_id)


class EcsApi(SdkApi):
    """:class:`SdkApi` whose tests drive the server API."""

    def client(self, key: SigningKey, project_id: str | None = None) -> EcsClient:
        return ecs_client(self.base, key, project_id)


def projects_with_keys(services: Services, *names: str) -> list[AccessKey]:
    """A new project for each of ``names`` and one access key of each, in order."""
    keys = []
    for name in names:
        create_project(services, name)
        keys.append(create_key(services, name))
    return keys
