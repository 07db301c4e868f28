"""The image's columns and properties once its job has stored the file.

The OS properties follow what the guest says (as the vendor's IMS user guide says in
"Registering an External Image File as a Private Image": a detected OS overrides the user's
choice; a Linux the list does not name becomes ``Other Linux``); when no guest OS was found,
the properties the image was registered with stay. Data and ISO images keep the properties
they were registered with (:data:`NO_GUEST_TYPES`).

A quick-imported RAW image also gets ``__bitmap_file`` (:data:`BITMAP_FILE`): the
``bucket:key`` of the bitmap file (``.mf``) its check verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imageport.rules.catalogue import INITIALIZATION_RULES
from imageport.service.images import os_versions
from imageport.service.ports import ImageInspection

#: Property of a quick-imported RAW image: ``bucket:key`` of the bitmap file its check verified.
BITMAP_FILE = "__bitmap_file"
#: Whether the image's initial configuration is done (:func:`initialization_done`), "true" or
#: "false": set by the job that made the image from a server, or configured it (``is_config``).
CONFIG_INIT = "__is_config_init"
#: ``virtual_env_type`` of the images whose OS properties are the registered ones, never a
#: detected guest's: a data image boots nothing (a system found on it is not its OS), and an
#: ISO image's system is the one its ``os_version`` names (no disk is read in it).
NO_GUEST_TYPES = frozenset({"DataImage", "IsoImage"})


def detected_os_properties(
    inspection: ImageInspection, registered: Mapping[str, str]
) -> dict[str, str]:
    """``__os_version``, ``__os_type``, ``__os_bit``, ``__platform`` from the guest, or {}."""
    guest = inspection.os
    if guest is None:
        return {}
    bits = inspection.bits or os_versions.bits_of(
        registered.get("__os_version", os_versions.OTHER_LINUX_64)
    )
    version = os_versions.os_version_for(guest.id, guest.version_id, bits) or (
        os_versions.OTHER_LINUX_64 if bits == 64 else os_versions.OTHER_LINUX_32
    )
    return {
        "__os_version": version,
        "__os_type": "Linux",
        "__os_bit": str(bits),
        "__platform": os_versions.platform_of(version),
    }


def initialization_done(inspection: ImageInspection) -> bool:
    """Whether the checked image's initial configuration is done (``__is_config_init``): its
    report names a guest and has no error or warning of the
    :data:`~imageport.rules.catalogue.INITIALIZATION_RULES`. A report that cannot be read
    (the worker wrote it from an untrusted image) says no."""
    report = inspection.report
    findings = None if report is None else report.get("findings")
    if not isinstance(findings, (list, tuple)) or inspection.os is None:
        return False
    for item in findings:
        if not isinstance(item, dict):
            return False
        if item.get("rule_id") in INITIALIZATION_RULES and item.get("severity") != "info":
            return False
    return True


def active_image_values(
    *,
    registered_properties: Mapping[str, Any],
    inspection: ImageInspection,
    disk_format: str,
    size: int,
    checksum: str,
    blob: str,
    extra_properties: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """The ``images`` columns to set when the image becomes active (``extra_properties`` are
    added to the properties, e.g. :data:`BITMAP_FILE`)."""
    props = {str(k): str(v) for k, v in registered_properties.items() if v is not None}
    if props.get("virtual_env_type") not in NO_GUEST_TYPES:
        props.update(detected_os_properties(inspection, props))
    props.update(extra_properties or {})
    props["__image_size"] = str(size)
    return {
        "disk_format": disk_format,
        "size": size,
        "virtual_size": inspection.virtual_size,
        "checksum": checksum,
        "blob": blob,
        "properties": props,
        "report": dict(inspection.report) if inspection.report is not None else None,
    }
