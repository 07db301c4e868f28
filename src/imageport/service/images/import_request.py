"""What a new image and its import job start with: the validated file-import request, the
image's first ``__`` properties, and the job's ``params`` document.

Shared by the use cases that register an image from a file (:mod:`.lifecycle`), receive its data
on the Glance routes (:mod:`.glance_data`) or copy it (:mod:`imageport.service.jobs.copy_job`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imageport.service.context import Services
from imageport.service.images import os_versions
from imageport.service.images import validation as v

IMPORT_JOB = "imsImportImageJob"
"""The job of an image registered from a file (initialized: configured before it was exported)."""
NATIVE_IMPORT_JOB = "imsNativeImportImageJob"
"""The job giving a queued (uninitialized) image its file."""

_ACTION_FIELDS = frozenset(
    {
        "name",
        "description",
        "image_url",
        "min_disk",
        "os_version",
        "os_type",
        "is_config",
        "is_config_init",
        "cmk_id",
        "type",
        "architecture",
        "hw_firmware_type",
        "is_quick_import",
        "data_images",
        "tags",
        "image_tags",
        "enterprise_project_id",
        "min_ram",
        "max_ram",
        "instance_id",
        "volume_id",
        "license_type",
    }
)
_ARCH_PROPERTY = {"x86": "x86_64", "arm": "aarch64"}


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """A validated file-import request (the fields the job and the image row need)."""

    name: str
    description: str
    url: v.ImageUrl
    min_disk: int
    min_ram: int
    max_ram: int | None
    os_version: str | None
    architecture: str
    firmware: str | None
    image_type: str
    is_config: bool
    is_config_init: bool
    quick: bool
    tags: list[str]
    enterprise_project_id: str | None


def parse_import_request(body: object, *, quick: bool) -> ImportRequest:
    """Validate a cloudimages action or quick-import body (see :mod:`validation` for codes)."""
    doc = v.require_object(body, _ACTION_FIELDS)
    v.refuse_other_sources(doc)
    quick = quick or v.check_bool(doc.get("is_quick_import"), "is_quick_import")
    name = v.check_name(doc.get("name"))
    description = v.check_description(doc.get("description"))
    url = v.check_image_url(doc.get("image_url"))
    min_disk = v.check_min_disk(doc.get("min_disk"))
    min_ram, max_ram = v.check_ram(doc.get("min_ram"), doc.get("max_ram"))
    os_version = v.check_os_version(doc.get("os_version"), required=quick)
    v.check_os_type(doc.get("os_type"), os_version)
    architecture = v.check_architecture(doc.get("architecture"))
    firmware = v.check_firmware(doc.get("hw_firmware_type"), architecture)
    v.check_license_type(doc.get("license_type"))
    return ImportRequest(
        name=name,
        description=description,
        url=url,
        min_disk=min_disk,
        min_ram=min_ram,
        max_ram=max_ram,
        os_version=os_version,
        architecture=architecture,
        firmware=firmware,
        image_type=v.check_image_type(doc.get("type")),
        is_config=v.check_bool(doc.get("is_config"), "is_config"),
        is_config_init=v.check_bool(doc.get("is_config_init"), "is_config_init", default=True),
        quick=quick,
        tags=v.check_tags(doc.get("tags"), doc.get("image_tags")),
        enterprise_project_id=v.check_enterprise_project(doc.get("enterprise_project_id")),
    )


def base_properties(
    *,
    os_version: str | None,
    description: str,
    config_init: bool,
    architecture: str,
    firmware: str | None,
    data_origin: str,
    image_type: str = "ECS",
) -> dict[str, str]:
    """The ``__`` properties (all strings) a new image starts with; the job overwrites the OS
    ones with what it detects in the guest."""
    version = os_version or os_versions.OTHER_LINUX_64
    return {
        "__imagetype": "private",
        "__isregistered": "true",
        "__image_source_type": "uds",
        "__originalimagename": "",
        "__data_origin": data_origin,
        "__root_origin": "file",
        "__description": description,
        "__os_version": version,
        "__os_type": "Linux",
        "__os_bit": str(os_versions.bits_of(version)),
        "__platform": os_versions.platform_of(version),
        "__is_config_init": "true" if config_init else "false",
        "hw_firmware_type": firmware or "bios",
        "architecture": _ARCH_PROPERTY[architecture],
        "__support_kvm": "true",
        "__support_arm": "true" if architecture == "arm" else "false",
        "virtual_env_type": "FusionCompute"
        if image_type in ("ECS", "FusionCompute")
        else image_type,
        "__lazyloading": "true",
        "__os_feature_list": "{}",
    }


def job_params(
    services: Services,
    *,
    url: v.ImageUrl | None,
    object_size: int,
    object_etag: str,
    quick: bool,
    is_config: bool,
    uninitialized: bool,
    min_disk: int,
    os_version: str | None,
    architecture: str,
    firmware: str | None,
    staged: str | None = None,
    declared_format: str | None = None,
) -> dict[str, object]:
    """The job's ``params`` document (every key always present, as
    :class:`~imageport.service.jobs.state.JobParams` reads it). The source is the
    object ``url``, or (``staged``, an image id) data received on the Glance routes and staged
    by :mod:`imageport.service.images.staging`; ``declared_format`` is the image's Glance
    ``disk_format``, which the file must then be (rule IMG-FORMAT)."""
    return {
        "bucket": None if url is None else url.bucket,
        "key": None if url is None else url.key,
        "staged": staged,
        "object_size": object_size,
        "object_etag": object_etag,
        "quick_import": quick,
        "is_config": is_config,
        "uninitialized": uninitialized,
        "min_disk": min_disk,
        "os_version": os_version,
        "architecture": architecture,
        "hw_firmware_type": firmware,
        "stored_format": services.settings.stored_format,
        "declared_format": declared_format,
    }


def native_job_params(
    services: Services,
    row: Any,
    *,
    url: v.ImageUrl | None = None,
    object_size: int,
    object_etag: str = "",
    staged: str | None = None,
) -> dict[str, object]:
    """The params of an ``imsNativeImportImageJob`` giving the queued image ``row`` its file
    (the OS, architecture and firmware it was created with). Data sent on the Glance routes
    (``staged``) must be of the image's declared ``disk_format``, as Glance means it; a file
    registered from a bucket (``url``) may be of any accepted format, as the vendor converts
    whatever it is given (its ``disk_format`` there only describes the result)."""
    props = dict(row.properties or {})
    os_version = props.get("__os_version")
    return job_params(
        services,
        url=url,
        object_size=object_size,
        object_etag=object_etag,
        quick=False,
        is_config=False,
        uninitialized=True,
        min_disk=row.min_disk,
        os_version=None if os_version == os_versions.OTHER_LINUX_64 else os_version,
        architecture="arm" if props.get("architecture") == "aarch64" else "x86",
        firmware=props.get("hw_firmware_type"),
        staged=staged,
        declared_format=row.disk_format if staged is not None else None,
    )


__all__ = [
    "IMPORT_JOB",
    "NATIVE_IMPORT_JOB",
    "ImportRequest",
    "base_properties",
    "job_params",
    "native_job_params",
    "parse_import_request",
]
