"""What a new image and its import job start with: the validated file-import request, the
image's first ``__`` properties, and the job's ``params`` document.

Shared by the use cases that register an image from a file (:mod:`.lifecycle`), receive its data
on the Glance routes (:mod:`.glance_data`) or copy it (:mod:`imageport.service.jobs.copy_job`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from imageport.rules.base import DiskKind
from imageport.service import codes
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid
from imageport.service.images import os_versions
from imageport.service.images import validation as v

IMPORT_JOB = "imsImportImageJob"
"""The job of an image registered from a file (initialized: configured before it was exported)."""
DATA_IMPORT_JOB = "imsImportDataImageJob"
"""The job of a data image registered from a file (``POST /v1/cloudimages/dataimages/action``,
and each of a registration's ``data_images``, as a sub-job of its ``imsImportImageJob``)."""
MAX_DATA_IMAGES = 3
"""Most ``data_images`` one registration may carry (the vendor's limit)."""
DATA_IMAGE_TYPE = "DataImage"
ISO_IMAGE_TYPE = "IsoImage"
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
        # ours: end the import with a boot test (None: settings.import_boot_test)
        "boot_test",
    }
)
#: Why ``is_config`` is refused with a quick import (the vendor's rule: fast import injects
#: no drivers and edits nothing).
QUICK_WITHOUT_CONFIG = (
    "is_config: fast import performs no configuration, it stores the file as it is; the file "
    "must be optimized beforehand (imageport optimize IN OUT -O raw) and registered without "
    "is_config, or imported normally with is_config"
)
_ARCH_PROPERTY = {"x86": "x86_64", "arm": "aarch64"}
_DATA_ITEM_FIELDS = frozenset(
    {
        "name",
        "description",
        "image_url",
        "min_disk",
        "is_quick_import",
        "tags",
        "image_tags",
        "volume_id",
    }
)
_DATA_ROUTE_FIELDS = frozenset(
    {
        "name",
        "description",
        "image_url",
        "min_disk",
        "os_type",
        "cmk_id",
        "tags",
        "image_tags",
        "enterprise_project_id",
    }
)
#: Fields an ISO image cannot have (IMG.0167), with why: an ISO is stored as it is and
#: installs a system; it is not fast-imported, carries no data disks and is not configured.
_NOT_FOR_ISO = {
    "is_quick_import": "an ISO file is stored as it is; fast import is for RAW and ZVHD2 disks",
    "data_images": "data images are registered with a system disk image, not an ISO",
    "is_config": "an ISO holds no installed system to configure",
}
#: Properties of a system disk that a data image does not have (it boots nothing).
_SYSTEM_ONLY_PROPERTIES = (
    "__os_version",
    "__os_bit",
    "__platform",
    "__is_config_init",
    "hw_firmware_type",
    "architecture",
    "__support_kvm",
    "__support_arm",
    "__os_feature_list",
)


def disk_kind_of(image_type: str) -> DiskKind:
    """What an image of the vendor's ``type`` is checked as: ``DataImage`` a data disk,
    ``IsoImage`` an ISO, any other type a system disk."""
    if image_type == DATA_IMAGE_TYPE:
        return "data"
    return "iso" if image_type == ISO_IMAGE_TYPE else "system"


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
    #: ``Linux``, or for a data image the ``os_type`` it was given (``Linux``/``Windows``).
    os_type: str = "Linux"
    #: The registration's ``data_images``, each a ``DataImage`` request of its own.
    data_images: tuple[ImportRequest, ...] = ()
    #: ``platform`` or ``byol`` as the request gave it (kept as ``__license_type``), or None.
    license_type: str | None = None
    #: Ours: ``boot_test`` as the request gave it (True: end the import with a boot test;
    #: None: as ``settings.import_boot_test`` says); only for a system image.
    boot_test: bool | None = None

    @property
    def disk_kind(self) -> DiskKind:
        """What the checker judges the file as (:class:`~imageport.rules.base.CheckOptions`)."""
        return disk_kind_of(self.image_type)

    @property
    def job_type(self) -> str:
        return DATA_IMPORT_JOB if self.image_type == DATA_IMAGE_TYPE else IMPORT_JOB


def parse_import_request(body: object, *, quick: bool) -> ImportRequest:
    """Validate a cloudimages action or quick-import body (see :mod:`validation` for codes):
    a system image, with up to three ``data_images``; an ISO image (``type: IsoImage``, not on
    the quick-import route); or on the quick-import route a data image (``type: DataImage``
    with ``os_type``)."""
    doc = v.require_object(body, _ACTION_FIELDS)
    v.refuse_other_sources(doc)
    quick_route = quick
    if quick_route and doc.get("type") == ISO_IMAGE_TYPE:
        raise RequestInvalid(
            codes.ISO_FIELD_NOT_ALLOWED,
            f"type IsoImage: {_NOT_FOR_ISO['is_quick_import']}",
            field="type",
        )
    image_type = v.check_image_type(
        doc.get("type"), also=(DATA_IMAGE_TYPE,) if quick_route else (ISO_IMAGE_TYPE,)
    )
    if image_type == ISO_IMAGE_TYPE:
        _check_iso_fields(doc)
    quick = quick or v.check_bool(doc.get("is_quick_import"), "is_quick_import")
    name = v.check_name(doc.get("name"))
    description = v.check_description(doc.get("description"))
    url = v.check_image_url(doc.get("image_url"))
    data = image_type == DATA_IMAGE_TYPE
    min_disk = (
        v.check_min_disk(doc.get("min_disk"), high=v.MAX_DATA_DISK_GIB)
        if data
        else v.check_min_disk(doc.get("min_disk"))
    )
    min_ram, max_ram = v.check_ram(doc.get("min_ram"), doc.get("max_ram"))
    os_version = v.check_os_version(doc.get("os_version"), required=quick and not data)
    if data:
        os_type = v.check_data_os_type(doc.get("os_type"))
        os_version = None
    else:
        os_type = v.check_os_type(doc.get("os_type"), os_version)
    architecture = v.check_architecture(doc.get("architecture"))
    firmware = v.check_firmware(doc.get("hw_firmware_type"), architecture)
    request = ImportRequest(
        name=name,
        description=description,
        url=url,
        min_disk=min_disk,
        min_ram=min_ram,
        max_ram=max_ram,
        os_version=os_version,
        architecture=architecture,
        firmware=firmware,
        image_type=image_type,
        is_config=v.check_bool(doc.get("is_config"), "is_config"),
        is_config_init=v.check_bool(doc.get("is_config_init"), "is_config_init", default=True),
        quick=quick,
        tags=v.check_tags(doc.get("tags"), doc.get("image_tags")),
        enterprise_project_id=v.check_enterprise_project(doc.get("enterprise_project_id")),
        license_type=v.check_license_type(doc.get("license_type")),
        os_type=os_type,
        boot_test=check_boot_test(doc.get("boot_test"), image_type),
    )
    if quick and request.is_config:
        raise RequestInvalid(codes.BAD_REQUEST, QUICK_WITHOUT_CONFIG, field="is_config")
    if data and (request.is_config or doc.get("min_ram") is not None):
        raise RequestInvalid(
            codes.BAD_REQUEST,
            "a data image has no system: is_config and min_ram do not apply",
            field="is_config" if request.is_config else "min_ram",
        )
    items = doc.get("data_images")
    if items not in (None, []):
        if quick_route:
            raise RequestInvalid(
                codes.BAD_REQUEST,
                "data_images go with POST /v2/cloudimages/action; a quick import registers "
                "one image",
                field="data_images",
            )
        return replace(request, data_images=_data_images(items, request))
    return request


def check_boot_test(value: object, image_type: str = "ECS") -> bool | None:
    """The registration's ``boot_test`` (ours): None when absent, else a boolean (IMG.0001);
    ``true`` for a data image or an ISO is refused (IMG.BOOT: it has no system to boot)."""
    if value is None:
        return None
    wanted = v.check_bool(value, "boot_test")
    if wanted and image_type in (DATA_IMAGE_TYPE, ISO_IMAGE_TYPE):
        raise RequestInvalid(
            codes.BOOT_NOT_OFFERED,
            f"boot_test: a {image_type} has no system of its own to boot",
            field="boot_test",
        )
    return wanted


def _check_iso_fields(doc: Mapping[str, object]) -> None:
    """An ISO image: ``os_version`` is required (IMG.0166), the fields of
    :data:`_NOT_FOR_ISO` are refused (IMG.0167)."""
    for field, why in _NOT_FOR_ISO.items():
        if doc.get(field) not in (None, False, []):
            raise RequestInvalid(
                codes.ISO_FIELD_NOT_ALLOWED,
                f"{field} is not allowed for an ISO image: {why}",
                field=field,
            )
    if doc.get("os_version") in (None, ""):
        raise RequestInvalid(
            codes.ISO_OS_REQUIRED,
            "an ISO image needs os_version: the system it installs (from GET "
            "/v1/cloudimages/os_version)",
            field="os_version",
        )


def _data_images(items: object, system: ImportRequest) -> tuple[ImportRequest, ...]:
    """The registration's ``data_images``: at most :data:`MAX_DATA_IMAGES` items of
    ``{name, description, image_url, min_disk 1-2048, is_quick_import, tags|image_tags}``,
    named differently from each other and from the system image."""
    if not isinstance(items, list):
        raise RequestInvalid(codes.BAD_REQUEST, "data_images must be a list", field="data_images")
    if len(items) > MAX_DATA_IMAGES:
        raise RequestInvalid(
            codes.BAD_REQUEST,
            f"data_images has {len(items)} items; at most {MAX_DATA_IMAGES}",
            field="data_images",
        )
    found: list[ImportRequest] = []
    for index, item in enumerate(items):
        try:
            where = f"data_images[{index}]"
            if not isinstance(item, dict):
                raise RequestInvalid(codes.BAD_REQUEST, f"{where} must be an object")
            unknown = sorted(k for k in item if k not in _DATA_ITEM_FIELDS)
            if unknown:
                raise RequestInvalid(
                    codes.BAD_REQUEST,
                    f"{where}: unknown field {unknown[0][:64]!r}",
                )
            if item.get("volume_id") not in (None, ""):
                raise RequestInvalid(
                    codes.SOURCE_NOT_OFFERED,
                    f"{where}: creating a data image from a volume (volume_id) is not available "
                    "yet: volumes do not exist on this platform; give its file with image_url",
                )
            name = v.check_name(item.get("name"))
            if name == system.name or any(name == d.name for d in found):
                raise RequestInvalid(
                    codes.NAME_TAKEN,
                    f"{where}: the name {name!r} is given to two images",
                )
            found.append(
                replace(
                    system,
                    name=name,
                    description=v.check_description(item.get("description")),
                    url=v.check_image_url(item.get("image_url")),
                    min_disk=v.check_min_disk(item.get("min_disk"), 1, v.MAX_DATA_DISK_GIB),
                    min_ram=0,
                    max_ram=None,
                    os_version=None,
                    image_type=DATA_IMAGE_TYPE,
                    is_config=False,
                    quick=v.check_bool(item.get("is_quick_import"), "is_quick_import"),
                    tags=v.check_tags(item.get("tags"), item.get("image_tags")),
                    data_images=(),
                    license_type=None,
                    boot_test=None,
                )
            )
        except RequestInvalid as refused:
            # the item's own checks name its field (name, min_disk...); the request's
            # field is data_images
            refused.field = "data_images"
            raise
    return tuple(found)


def parse_data_image_request(body: object) -> ImportRequest:
    """Validate a ``POST /v1/cloudimages/dataimages/action`` body ``{name, os_type,
    image_url, min_disk 40-2048, description, tags|image_tags, enterprise_project_id,
    cmk_id}`` (``cmk_id``: IMG.0095, there is no KMS here)."""
    doc = v.require_object(body, _DATA_ROUTE_FIELDS)
    v.refuse_other_sources(doc)
    return ImportRequest(
        name=v.check_name(doc.get("name")),
        description=v.check_description(doc.get("description")),
        url=v.check_image_url(doc.get("image_url")),
        min_disk=v.check_min_disk(doc.get("min_disk"), v.MIN_SYSTEM_DISK_GIB, v.MAX_DATA_DISK_GIB),
        min_ram=0,
        max_ram=None,
        os_version=None,
        architecture="x86",
        firmware=None,
        image_type=DATA_IMAGE_TYPE,
        is_config=False,
        is_config_init=False,
        quick=False,
        tags=v.check_tags(doc.get("tags"), doc.get("image_tags")),
        enterprise_project_id=v.check_enterprise_project(doc.get("enterprise_project_id")),
        os_type=v.check_data_os_type(doc.get("os_type")),
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
    os_type: str = "Linux",
) -> dict[str, str]:
    """The ``__`` properties (all strings) a new image starts with; the job overwrites the OS
    ones of a system image with what it detects in the guest. A data image
    (``virtual_env_type: DataImage``) has only its ``__os_type`` (the system of the servers
    its disk is for): no OS version, firmware or architecture, since it boots nothing."""
    props = _system_properties(
        os_version=os_version,
        description=description,
        config_init=config_init,
        architecture=architecture,
        firmware=firmware,
        data_origin=data_origin,
        image_type=image_type,
    )
    if image_type == DATA_IMAGE_TYPE:
        for key in _SYSTEM_ONLY_PROPERTIES:
            props.pop(key)
        props["__os_type"] = os_type
    return props


def _system_properties(
    *,
    os_version: str | None,
    description: str,
    config_init: bool,
    architecture: str,
    firmware: str | None,
    data_origin: str,
    image_type: str,
) -> dict[str, str]:
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
    disk_kind: DiskKind = "system",
    boot_test: bool | None = None,
) -> dict[str, object]:
    """The job's ``params`` document (every key always present, as
    :class:`~imageport.service.jobs.state.JobParams` reads it). The source is the
    object ``url``, or (``staged``, an image id) data received on the Glance routes and staged
    by :mod:`imageport.service.images.staging`; ``declared_format`` is the image's Glance
    ``disk_format``, which the file must then be (rule IMG-FORMAT); ``disk_kind``: what the
    file is checked as (a data disk or an ISO skips the guest rules; an ISO is stored as it
    is); ``boot_test``: the registration's option (None: ``settings.import_boot_test``), which
    ends the import of a system image with a boot test where boot tests are offered."""
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
        "disk_kind": disk_kind,
        "boot_test": disk_kind == "system"
        and services.boot is not None
        and services.settings.boot_test_concurrency > 0
        and (services.settings.import_boot_test if boot_test is None else boot_test),
    }


def native_job_params(
    services: Services,
    row: Any,
    *,
    url: v.ImageUrl | None = None,
    object_size: int,
    object_etag: str = "",
    staged: str | None = None,
    boot_test: bool | None = None,
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
        boot_test=boot_test,
    )


__all__ = [
    "DATA_IMAGE_TYPE",
    "DATA_IMPORT_JOB",
    "IMPORT_JOB",
    "ISO_IMAGE_TYPE",
    "MAX_DATA_IMAGES",
    "NATIVE_IMPORT_JOB",
    "ImportRequest",
    "base_properties",
    "check_boot_test",
    "disk_kind_of",
    "job_params",
    "native_job_params",
    "parse_data_image_request",
    "parse_import_request",
]
