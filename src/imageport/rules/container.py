"""Rules about the image file's container: format, safety, encryption, sizes."""

from __future__ import annotations

import math
from collections.abc import Iterator

from imageport.disk.audit import EXPANSION, FRAGMENTED, REFCOUNT, SHARED, STORAGE_HAZARDS
from imageport.findings import Finding, Severity
from imageport.formats.base import UNSUPPORTED_PREFIX
from imageport.formats.registry import ACCEPTED_FORMATS
from imageport.limits import GiB, TiB
from imageport.rules.base import ALL_KINDS, ImageFacts, Rule

_ACCEPTED = ", ".join(ACCEPTED_FORMATS)
ISO_FORMAT = "iso9660"
"""The one format an ISO image (``type: IsoImage``) is registered from, and the only kind of
image an ISO file may be registered as."""
#: ``min_disk`` (GiB) range and largest virtual disk of each kind of image: a system disk
#: (and the disk an ISO installs onto) is 40-1024 GiB, a data disk 1-2048 GiB (the vendor's
#: ``data_images`` limits).
DISK_LIMITS_GIB = {"system": (40, 1024), "iso": (40, 1024), "data": (1, 2048)}


def _format_label(facts: ImageFacts) -> str:
    c = facts.container
    return f"{c.format} ({c.variant})" if c.variant else c.format


class FormatRule(Rule):
    """What it checks: the file's real format, read from its content and never from its name,
    is one the platform accepts (qcow2, vmdk, vhd, vhdx, qed, vdi, qcow, raw, zvhd, zvhd2), and
    its structures are intact enough to read. When the image declared a format (the
    ``disk_format`` of an image created with ``POST /v2/images``), the file must be of that
    format. An ISO image (``type: IsoImage``) is the one exception, both ways: it must be an
    ISO 9660 file (stored as it is, without conversion), and an ISO 9660 file is accepted only
    as an ISO image, never as a system or data disk.

    Why it matters: the import job can only convert these formats; a file in another format, a
    compressed or archived file, or a damaged one fails after a long upload. A file that is not
    what its image declares is a known attack on Glance: a qcow2 (naming a backing file, say)
    sent as ``raw`` would be handed to the hypervisor as a disk whose first bytes are a qcow2
    header, and tools that trust the declared format would skip the checks the real one needs.

    How to fix: convert the disk with ``qemu-img convert -O qcow2 IN OUT``; decompress or
    unpack archives (``.gz``, ``.xz``, ``.zip``, ``.ova``) and check the disk image inside;
    re-export a damaged image from its source. Declare the format the file really has
    (``qemu-img info IN`` tells it), or convert the file to the declared one.

    Example: ``disk.img.gz`` is reported as "gzip-compressed file" with the hint to decompress it;
    a qcow2 uploaded into an image created with ``disk_format: raw`` is refused, naming both; an
    installer ``.iso`` registered as a system disk is refused (register it with ``type:
    IsoImage``), and a qcow2 registered as an ISO image is refused too.
    """

    id = "IMG-FORMAT"
    severity = Severity.ERROR
    title = "The file's format must be one the platform accepts"
    advice = "Convert the disk to an accepted format, e.g. `qemu-img convert -O qcow2 IN OUT`."
    title_zh = "文件格式必须是平台支持的格式"
    advice_zh = "将磁盘转换为平台支持的格式，例如 `qemu-img convert -O qcow2 IN OUT`。"
    kinds = ALL_KINDS

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        c = facts.container
        if c.format == "polyglot":
            return  # IMG-SAFE reports it
        if facts.options.disk_kind == "iso":
            yield from self._iso(facts)
            return
        if not c.accepted:
            hint = c.properties.get("hint")
            what = "an encrypted " if c.encryption else ""
            yield self.found(
                f"The file is {what}{_format_label(facts)}, which the platform does not accept "
                f"(accepted: {_ACCEPTED}).",
                f"detected format: {c.format}",
                *((f"variant: {c.variant}",) if c.variant else ()),
                advice=hint or self.advice,
            )
        declared = facts.options.declared_format
        if declared is not None and c.accepted and c.format != declared:
            yield self.found(
                f"The image was declared {declared} (disk_format) but the file is "
                f"{_format_label(facts)}.",
                f"declared format: {declared}",
                f"detected format: {c.format}",
                advice=f"Create the image with disk_format {c.format}, or convert the file "
                f"to {declared} (`qemu-img convert -O {declared} IN OUT`).",
            )
        yield from self._damage(facts)

    def _iso(self, facts: ImageFacts) -> Iterator[Finding]:
        """An ISO image: the file must be ISO 9660 (and intact)."""
        c = facts.container
        if c.format != ISO_FORMAT:
            yield self.found(
                f"An ISO image (type IsoImage) is registered from an ISO 9660 file; this file "
                f"is {_format_label(facts)}.",
                f"detected format: {c.format}",
                advice="Register a disk image with type ECS (or as a data image), or give an "
                "ISO 9660 file (`xorriso -as mkisofs -o OUT.iso DIR`); a UDF-only disc must "
                "be remastered as ISO 9660.",
            )
        yield from self._damage(facts)

    def _damage(self, facts: ImageFacts) -> Iterator[Finding]:
        c = facts.container
        if c.damage is not None and c.damage.startswith(UNSUPPORTED_PREFIX):
            yield self.found(
                f"The file is {_format_label(facts)}, a variant imageport cannot read: "
                f"{c.damage.removeprefix(UNSUPPORTED_PREFIX)}",
                f"detected format: {c.format}",
                advice="Convert it to a self-contained image on the system that made it, e.g. "
                "`qemu-img convert -O qcow2 IN OUT`.",
            )
        elif c.damage is not None:
            yield self.found(
                f"The file is {c.format} but its structures are invalid, so it cannot be read: "
                f"{c.damage}",
                f"detected format: {c.format}",
                advice="Re-export or re-convert the image from its source; the file is damaged "
                "or was not written completely (check the upload or download finished).",
            )


class SafeRule(Rule):
    """What it checks: the file is self-contained: no backing file, no external data file, no
    extents or parent disks in other files, no journal to replay, no feature bits this reader
    does not know, and no second format hidden in the same bytes (a polyglot). And its tables
    hold no more data than the file does: no two guest ranges read the same stored bytes
    (qcow2 L2 entries, QCOW and QED L2 entries, VMDK grain tables, VHD and VHDX BATs, the VDI
    block map), the qcow2 refcounts agree with the tables (a cluster in use has a refcount
    of at least 1, and exactly its number of references when there are no internal
    snapshots), and compressed clusters, grains and blocks do not expand more than 256:1 over
    the whole image beyond its first 256 MiB of compressed data (a system disk's data
    compresses 2-10:1; only constant or repeated data goes further).

    Why it matters: a file that names another file could make the platform read its own files
    (for example a qcow2 whose backing file is ``/etc/passwd``), and a file that is two formats
    at once could be checked as one and converted as the other. imageport never opens a path
    named inside an image. Tables that point many guest clusters at one stored cluster make a
    file of a few MiB convert into a disk of up to 1 TiB, filling the platform's storage;
    ``qemu-img check`` reports such tables as refcount errors.

    How to fix: flatten the image into one self-contained file, e.g.
    ``qemu-img convert -O qcow2 top.qcow2 flat.qcow2`` on the machine that has the whole chain;
    for VMDK descriptors with separate extents, ``qemu-img convert -O vmdk -o
    subformat=monolithicSparse``; open a VHDX with a dirty log once in Hyper-V (or
    ``qemu-img check -r all``) so the log is replayed. Tables that share data or disagree with
    their refcounts are not what qemu or a hypervisor writes: ``qemu-img check`` names the
    damage; re-export the disk from its source (``qemu-img check -r all`` repairs refcounts
    on a copy, but not shared clusters).

    Example: a qcow2 with backing file ``/etc/passwd`` is refused, quoting that path; a 3 MiB
    qcow2 whose L2 tables point 16 million guest clusters at one cluster is refused within a
    second, naming guest offsets that share the cluster and the data mapped onto the file.
    """

    id = "IMG-SAFE"
    severity = Severity.ERROR
    title = "The file must be self-contained and unambiguous"
    advice = "Flatten the image into one self-contained file with `qemu-img convert`."
    title_zh = "文件必须自包含且格式明确"
    advice_zh = "用 `qemu-img convert` 将镜像合并为一个自包含的文件。"
    kinds = ALL_KINDS

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        c = facts.container
        for hazard in c.hazards:
            if hazard.kind in STORAGE_HAZARDS:
                yield self.found(
                    f"The {c.format} file's tables are unsafe to convert: {hazard.detail}.",
                    f"{hazard.kind}: {hazard.detail}",
                    advice=_STORAGE_ADVICE[hazard.kind],
                )
                continue
            yield self.found(
                f"The {c.format} file is not self-contained: {hazard.detail}.",
                f"{hazard.kind}: {hazard.detail}",
            )


_STORAGE_ADVICE = {
    SHARED: "No tool writes tables like these: re-export the disk from its source "
    "(`qemu-img check -f FMT FILE` shows the damage).",
    REFCOUNT: "Re-export the disk from its source, or repair a copy with "
    "`qemu-img check -r all FILE` and check it again.",
    EXPANSION: "Convert the disk without compression (`qemu-img convert -O qcow2 IN OUT`, "
    "no -c) and upload that; data that compresses this much is constant or "
    "repeated, not a system's.",
    FRAGMENTED: "Rewrite the image in file order with `qemu-img convert -O qcow2 IN OUT` "
    "(without -c) and check the new file.",
}


class EncryptionRule(Rule):
    """What it checks: the file is not encrypted (no qcow/qcow2 ``crypt_method``, no LUKS
    encryption header, no LUKS container).

    Why it matters: the platform cannot read an encrypted disk, so it can neither check nor
    convert it, and servers created from it would not boot.

    How to fix: decrypt while converting, e.g. ``qemu-img convert --object
    secret,id=sec0,file=KEYFILE --image-opts
    driver=qcow2,file.filename=IN,encrypt.key-secret=sec0 -O qcow2 OUT``.

    Example: a qcow2 created with ``-o encrypt.format=luks`` is refused as "luks".
    """

    id = "IMG-QCOW2-ENCRYPTED"
    severity = Severity.ERROR
    title = "The file must not be encrypted"
    advice = "Convert to an unencrypted image with qemu-img, giving it the key."
    title_zh = "文件不能加密"
    advice_zh = "提供密钥，用 qemu-img 将其转换为未加密的镜像。"
    kinds = ALL_KINDS

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        c = facts.container
        if c.encryption:
            yield self.found(
                f"The {c.format} file is encrypted ({c.encryption}).",
                f"encryption: {c.encryption}",
            )


class SizeRule(Rule):
    """What it checks: the file is at most 1 TiB, whatever the import path; above 128 GiB it
    must be RAW or ZVHD2 and be imported with fast import (checked with ``--fast-import``,
    where IMG-FAST-RAW and IMG-FAST-ZVHD2 then judge the bitmap file and the guest).

    Why it matters: the normal import job converts the file and is limited to 128 GiB; only
    fast import, which stores the file without converting it, takes larger files, and no
    path takes a file over 1 TiB.

    How to fix: shrink the image (``virt-sparsify``, trim free space, drop data partitions);
    or, up to 1 TiB, convert it to ZVHD2 (``imageport convert IN OUT.zvhd2``) or RAW with a
    bitmap file (``imageport convert IN OUT.raw``, then ``imageport bitmap OUT.raw``) and use
    fast import.

    An ISO image (stored as it is, never fast-imported) is limited to 128 GiB.

    Example: a 200 GiB vmdk is refused; a 200 GiB raw is told to use fast import, and passes
    when checked with ``--fast-import --bitmap disk.mf``; a 1.5 TiB raw is refused even then.
    """

    id = "IMG-SIZE"
    severity = Severity.ERROR
    title = "The file must not exceed 1 TiB (128 GiB without fast import)"
    advice = (
        "Shrink the image; up to 1 TiB, use fast import with ZVHD2 (`imageport convert "
        "IN OUT.zvhd2`) or RAW and its bitmap file (`imageport bitmap disk.raw`)."
    )
    title_zh = "文件不能超过 1 TiB（不使用快速导入时为 128 GiB）"
    advice_zh = (
        "缩小镜像；1 TiB 以内可使用快速导入：ZVHD2（`imageport convert IN OUT.zvhd2`）"
        "或 RAW 加位表文件（`imageport bitmap disk.raw`）。"
    )
    kinds = ALL_KINDS

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        c = facts.container
        size = c.file_size
        evidence = f"file size: {size} bytes ({size / GiB:.1f} GiB)"
        if size > TiB:
            yield self.found(
                "The file is larger than 1 TiB, the most any import takes (fast import included).",
                evidence,
                advice="Shrink the disk below 1 TiB (move data to data disks, trim free space, "
                "shrink the filesystem and partition, then `qemu-img resize --shrink`).",
            )
        elif size > 128 * GiB:
            if facts.options.disk_kind == "iso":
                yield self.found(
                    "The ISO file is larger than 128 GiB, the most an ISO image takes (it is "
                    "stored as it is; fast import is for RAW and ZVHD2 disks).",
                    evidence,
                    advice="Split the installation media, or move the data onto a data disk.",
                )
            elif c.format not in ("raw", "zvhd2"):
                yield self.found(
                    f"The file is larger than 128 GiB and is {c.format}; files this large can "
                    "only be imported as RAW or ZVHD2 with fast import.",
                    evidence,
                    advice="Convert it with `imageport convert IN OUT.zvhd2` and import the "
                    "ZVHD2 with fast import (check it with `--fast-import`: IMG-FAST-ZVHD2).",
                )
            elif not facts.options.fast_import:
                raw = c.format == "raw"
                yield self.found(
                    f"The file is larger than 128 GiB, so this {c.format.upper()} file must be "
                    "imported with fast import.",
                    evidence,
                    advice="Register it with fast import (quick import) and check it with "
                    + (
                        "`imageport check FILE --fast-import --bitmap FILE.mf` after making the "
                        "bitmap with `imageport bitmap FILE` (IMG-FAST-RAW)."
                        if raw
                        else "`imageport check FILE --fast-import` (IMG-FAST-ZVHD2)."
                    ),
                )


class DiskSizeRule(Rule):
    """What it checks: the virtual disk is at most 1024 GiB, and the ``min_disk`` given for the
    image (``--min-disk``) is 40-1024 GiB and not smaller than the virtual size rounded up to a
    whole GiB. For a data image (``DataImage``, ``--data-image``) the limits are those of a data
    disk: 1-2048 GiB for both; for an ISO image those of the system disk it installs onto (its
    virtual size is the ISO 9660 volume size).

    Why it matters: servers get a system disk of ``min_disk``; a disk smaller than the image
    cannot hold it, and the platform's system disks are 40-1024 GiB (data disks made from an
    image, 1-2048 GiB).

    How to fix: register with a ``min_disk`` of at least the rounded-up virtual size; shrink a
    larger disk (resize the filesystem and partition, then ``qemu-img resize --shrink``).

    Example: a VHD of 40.01 GiB needs ``min_disk`` 41; a 10 GiB data disk may be registered
    as a data image with ``min_disk`` 10.
    """

    id = "IMG-DISK-SIZE"
    severity = Severity.ERROR
    title = "The virtual disk must fit a 40-1024 GiB system disk (1-2048 GiB data disk)"
    advice = "Use a min_disk of at least the virtual size rounded up to whole GiB."
    title_zh = "虚拟磁盘必须放得进 40-1024 GiB 的系统盘（数据盘为 1-2048 GiB）"
    advice_zh = "min_disk 至少取虚拟磁盘大小，按 GiB 向上取整。"
    kinds = ALL_KINDS

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        vsize = facts.container.virtual_size
        min_disk = facts.options.min_disk_gib
        low, high = DISK_LIMITS_GIB[facts.options.disk_kind]
        disk = "data disk" if facts.options.disk_kind == "data" else "virtual disk"
        if vsize is not None:
            needed = math.ceil(vsize / GiB)
            evidence = f"virtual size: {vsize} bytes ({needed} GiB rounded up)"
            if vsize > high * GiB:
                yield self.found(
                    f"The {disk} is larger than {high} GiB.",
                    evidence,
                    advice=f"Shrink the disk to at most {high} GiB before importing it.",
                )
            if min_disk is not None and min_disk < needed:
                yield self.found(
                    f"min_disk {min_disk} GiB is smaller than the {disk} ({needed} GiB).",
                    evidence,
                    advice=f"Register the image with min_disk of at least {max(needed, low)}.",
                )
        if min_disk is not None and not low <= min_disk <= high:
            yield self.found(
                f"min_disk {min_disk} GiB is outside {low}-{high} GiB.",
                f"min_disk: {min_disk}",
            )
