"""Every error code the image API answers with, one named constant each.

A refused request answers ``{"error": {"code": ..., "message": ...}, "error_code": ...}`` and a
failed job records its code in ``error_code``; clients test these strings, so each is defined
once, here, and every module names the constant (``tests/service/test_codes.py`` fails on an
``"IMG.`` literal anywhere else in ``src/``). The numbered codes are the vendor's (the cloud's
Image Management Service), answered where the vendor answers them; the named ones
(``IMG.STATE``, ``IMG.NOT_FOUND`` ...) are ours, for cases the vendor's list has no code for.
The bucket API answers S3's own codes instead (``NoSuchBucket`` ...), and rule IDs such as
``IMG-SAFE`` (with a dash) belong to the rule catalogue, not here. The HTTP status that goes
with a code is chosen where it is raised (mostly 400, see :mod:`imageport.service.errors`).
"""

from __future__ import annotations

from typing import Final

# -- the vendor's codes -------------------------------------------------------------------------

#: A request the vendor has no finer code for is malformed: a bad query parameter, patch
#: operation, tag list or media type, a body shorter than declared; also the 500 body.
BAD_REQUEST: Final = "IMG.0001"
#: ``name`` is longer than 128 characters.
NAME_TOO_LONG: Final = "IMG.0002"
#: ``name`` is not a string, or has a character the name rules do not allow.
NAME_INVALID: Final = "IMG.0003"
#: ``description`` is longer than 1024 characters.
DESCRIPTION_TOO_LONG: Final = "IMG.0004"
#: The request needs a JSON body and it is empty.
BODY_EMPTY: Final = "IMG.0007"
#: Another image of the project has this name (or a client-chosen ``id`` is taken).
NAME_TAKEN: Final = "IMG.0009"
#: ``name`` is missing, or a patch removes it.
NAME_REQUIRED: Final = "IMG.0013"
#: The project is at its image quota, or its stored bytes would pass its storage quota.
QUOTA_EXCEEDED: Final = "IMG.0015"
#: ``image_url`` / ``bucket_url`` is not ``bucket:key``.
BUCKET_URL_INVALID: Final = "IMG.0017"
#: ``type`` is not one the route offers (``ECS``/``FusionCompute``, ``IsoImage`` on a
#: registration, ``DataImage`` on a quick import).
TYPE_INVALID: Final = "IMG.0024"
#: ``description`` is not a string, or holds a character it may not.
DESCRIPTION_INVALID: Final = "IMG.0054"
#: ``min_disk``, ``min_ram`` or ``max_ram`` is missing, not a number or out of range.
DISK_OR_RAM_INVALID: Final = "IMG.0055"
#: ``os_version`` is missing (quick import) or not in the list of supported versions.
OS_VERSION_INVALID: Final = "IMG.0056"
#: The image file is empty, or (a job) it vanished, changed or shrank after registration.
SOURCE_FILE_UNUSABLE: Final = "IMG.0057"
#: The bucket or the object is not of the STANDARD storage class (rule IMG-STORAGE-CLASS).
NOT_STANDARD_STORAGE: Final = "IMG.0058"
#: The image file is larger than the import path allows (rule IMG-SIZE).
FILE_TOO_LARGE: Final = "IMG.0059"
#: The bucket does not exist or is not the caller's (one answer for both).
BUCKET_UNAVAILABLE: Final = "IMG.0069"
#: The file format is not one that can be imported or exported this way.
FORMAT_NOT_SUPPORTED: Final = "IMG.0072"
#: The image has a job in progress (still being created, imported, exported or copied).
IMAGE_BUSY: Final = "IMG.0090"
#: 403: the caller's project is not the image's owner, only a member it is shared with: it
#: may read and copy the image but not change, export, share or delete it.
NOT_OWNER: Final = "IMG.0092"
#: ``cmk_id``: no KMS key can be found (encrypted images are not offered).
KMS_KEY_NOT_FOUND: Final = "IMG.0095"
#: The bucket name in ``bucket:key`` is not a valid bucket name.
BUCKET_NAME_INVALID: Final = "IMG.0109"
#: The file named by ``image_url`` is not in the bucket.
FILE_NOT_IN_BUCKET: Final = "IMG.0121"
#: ``os_type`` is missing, not Linux, or does not match ``os_version``.
OS_TYPE_INVALID: Final = "IMG.0122"
#: ``hw_firmware_type`` is not bios or uefi (or not uefi for an arm image).
FIRMWARE_INVALID: Final = "IMG.0141"
#: An ISO image (``type: IsoImage``) is registered without ``os_version``.
ISO_OS_REQUIRED: Final = "IMG.0166"
#: A field an ISO image cannot have (``is_quick_import``, ``data_images``, ``is_config``).
ISO_FIELD_NOT_ALLOWED: Final = "IMG.0167"
#: The folder or file name in ``bucket:key`` contains a space.
SPACE_IN_FILE_NAME: Final = "IMG.0175"
#: The project already has as many unfinished jobs as it may.
TOO_MANY_JOBS: Final = "IMG.0194"
#: ``architecture`` is not x86 or arm.
ARCHITECTURE_INVALID: Final = "IMG.0212"
#: A job failed inside the service: a worker failed, an unexpected error, no disk room.
INTERNAL: Final = "IMG.1075"

# -- ours ---------------------------------------------------------------------------------------

#: 409: the image (or job) is not in a status that allows the operation.
STATE: Final = "IMG.STATE"
#: A job ended because its user cancelled it.
CANCELLED: Final = "IMG.CANCELLED"
#: 404: no such image, job or route in the caller's project (another project's is the same).
NOT_FOUND: Final = "IMG.NOT_FOUND"
#: 405: the method is not allowed on the path.
METHOD_NOT_ALLOWED: Final = "IMG.METHOD"
#: 403: the image is protected and cannot be deleted.
PROTECTED: Final = "IMG.PROTECTED"
#: 403: the region does not offer external image import.
REGION_REFUSES_IMPORT: Final = "IMG.REGION"
#: An image from a volume (volumes do not exist here), from a server's data disks (servers
#: have none) or from a server where the service runs none; ``instance_id`` on a route that
#: imports files only.
SOURCE_NOT_OFFERED: Final = "IMG.SOURCE"
#: 409: the project is already a member of the image (``POST /v2/images/{id}/members``).
MEMBER_EXISTS: Final = "IMG.MEMBER_EXISTS"
#: A project to share an image with does not exist (or is the image's own project).
PROJECT_UNKNOWN: Final = "IMG.PROJECT"
#: 404: the image or job has no check report (yet): no check has run on its file.
NO_REPORT: Final = "IMG.NO_REPORT"

#: Boot tests are not offered here (turned off, or QEMU or its firmware is missing: the
#: message says what to install), or not for this image (a data disk or an ISO boots nothing).
BOOT_NOT_OFFERED: Final = "IMG.BOOT"

#: 409: an image a server (not deleted) was made from cannot be deleted.
IMAGE_IN_USE: Final = "IMG.IN_USE"

# -- the server API's codes (the vendor's ECS codes, ``Ecs.xxxx``) ----------------------------

#: 400: the request is malformed (the ECS API's generic code).
ECS_BAD_REQUEST: Final = "Ecs.0000"
#: 400: the project is at its server quota. 403 on the key pair routes: the project holds
#: ``keypair_quota`` key pairs already (403 is Nova's status for its key pair quota).
ECS_QUOTA: Final = "Ecs.0001"
#: 403: no permission.
ECS_FORBIDDEN: Final = "Ecs.0003"
#: 400: a parameter is invalid (named in the message). The key pair routes answer it for every
#: field they refuse (a name, a public key, ``type: x509``, an unknown field or query
#: parameter): the vendor's list has no finer code for those (its key pair service's
#: ``KPS.xxxx`` codes belong to another API).
ECS_INVALID: Final = "Ecs.0005"
#: 400: the project id in the path is not the caller's.
ECS_PROJECT_MISMATCH: Final = "Ecs.0023"
#: 400: no such flavor.
ECS_FLAVOR_UNKNOWN: Final = "Ecs.0029"
#: 400: no such image.
ECS_IMAGE_UNKNOWN: Final = "Ecs.0031"
#: 400: the image is not active.
ECS_IMAGE_NOT_ACTIVE: Final = "Ecs.0032"
#: 400: the server's status does not allow the operation.
ECS_STATE: Final = "Ecs.0100"
#: 404: no such server.
ECS_NOT_FOUND: Final = "Ecs.0114"
#: 400: too many servers in one batch.
ECS_BATCH_TOO_LARGE: Final = "Ecs.0118"
#: A server could not be created (its job's error code).
ECS_CREATE_FAILED: Final = "Ecs.0204"
#: No such key pair (the vendor's "the key pair does not exist"): 400 when a server names one,
#: 404 on the key pair routes (``/v2.1/{project_id}/os-keypairs/{name}``).
ECS_KEYPAIR_UNKNOWN: Final = "Ecs.0314"
#: 400: the host has not enough vCPUs or memory left for the flavor.
ECS_NO_RESOURCES: Final = "Ecs.0319"
#: 400: the console log could not be read.
ECS_CONSOLE_FAILED: Final = "Ecs.0321"
#: A server could not be deleted (its job's error code).
ECS_DELETE_FAILED: Final = "Ecs.0501"
#: 409 (ours: the vendor's list has no code for it, Nova answers 409): the project already has
#: a key pair of that name.
ECS_KEYPAIR_EXISTS: Final = "Ecs.KEYPAIR_EXISTS"
#: 400: ``adminPass`` does not meet the password rules (8-26 characters of three kinds...).
ECS_PASSWORD: Final = "Ecs.0011"  # noqa: S105 (a code, not a password)
#: 400: ``nics[].subnet_id`` names a subnet this service does not have.
ECS_SUBNET_UNKNOWN: Final = "Ecs.0038"
#: A server's machine could not be started, stopped or rebooted (its job's error code; ours:
#: the vendor's list has no code for it).
ECS_MACHINE_FAILED: Final = "Ecs.MACHINE"
#: 403: this service runs no servers (no server host is configured; ours, like ``IMG.REGION``).
ECS_NOT_OFFERED: Final = "Ecs.NOT_OFFERED"


def http_status(status: int) -> str:
    """``IMG.HTTP<status>``: a refusal made below the image API (an HTTP limit, a framework
    error) that has no code of its own."""
    return f"IMG.HTTP{status}"
