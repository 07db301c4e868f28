"""IMG-FAST-RAW and IMG-FAST-ZVHD2: what fast import needs of the file and of the guest.

Fast import stores the file as it is: no conversion, and none of the changes the normal import
can make to a guest. So the guest must already be *optimized*, and a RAW file needs its bitmap
file (the vendor's IMS API reference, "Importing an Image File Quickly"). These rules add
nothing new to judge a guest by: they run the optimization rules of the catalogue
(:data:`OPTIMIZATION_RULE_IDS`) again and turn every warning or error those report into an error
of their own, one finding per unmet rule, so that the job's failure reason names each of them.
The bitmap is read and compared with the image by the check service (rules never open files);
IMG-FAST-RAW judges the recorded :class:`~imageport.rules.base.BitmapCheck`.
"""

from __future__ import annotations

from collections.abc import Iterator

from imageport.findings import Finding, Severity
from imageport.formats.base import Container
from imageport.rules.base import BitmapCheck, ImageFacts, Rule
from imageport.rules.engine import run_rules

#: The rules that say an image is "optimized" (the vendor's IMS user guide, "Optimizing a
#: Linux Private Image": paravirtual drivers in the initrd, no persistent-net rules, DHCP
#: without MAC bindings, fstab by UUID and without data disks, cloud-init for the platform,
#: serial console). IMG-LOGIN, IMG-BOOT-MODE and the other guest rules are not here: they are
#: errors on every path and report on their own.
OPTIMIZATION_RULE_IDS = (
    "IMG-DRIVERS",
    "IMG-NET-RULES",
    "IMG-NET-DHCP",
    "IMG-HW-BINDING",
    "IMG-FSTAB-DATA-DISK",
    "IMG-FSTAB-UUID",
    "IMG-CLOUD-INIT",
    "IMG-CONSOLE",
)
#: Formats fast import takes.
FAST_FORMATS = ("raw", "zvhd2")
#: Findings of one unmet rule quoted in full; more are counted.
_MAX_QUOTED = 5


def optimization_rules() -> tuple[Rule, ...]:
    """The catalogue's instances of the optimization rules, in :data:`OPTIMIZATION_RULE_IDS`
    order (looked up when called: the catalogue lists the rules of this module too)."""
    from imageport.rules.catalogue import rule_by_id

    return tuple(rule_by_id(rule_id) for rule_id in OPTIMIZATION_RULE_IDS)


def unmet(facts: ImageFacts) -> Iterator[tuple[Rule, tuple[Finding, ...]]]:
    """Each optimization rule that reports a warning or an error, with those findings (notes,
    severity info, do not count). A rule that crashes counts as unmet (fail closed)."""
    for rule in optimization_rules():
        found = tuple(f for f in run_rules((rule,), facts) if f.severity is not Severity.INFO)
        if found:
            yield rule, found


class _OptimizedRule(Rule):
    """Shared by the two fast-import rules: the guest must be optimized (a system disk's: a
    data disk has no system, so only its format and bitmap are judged)."""

    kinds = frozenset({"system", "data"})

    def _optimized(self, facts: ImageFacts) -> Iterator[Finding]:
        if facts.options.disk_kind != "system":
            return
        if facts.installed_guest is None:
            yield self.found(
                "No installed Linux system could be read from the disk, so it cannot be "
                "confirmed to be optimized for fast import.",
                "the other errors of this check say why the disk or its system was not read",
                advice="Fix the other errors first; fast import needs a readable, optimized "
                "system disk.",
            )
            return
        for rule, found in unmet(facts):
            first = found[0]
            more = len(found) - 1
            tail = f" (and {more} more {rule.id} finding{'s' if more > 1 else ''})" if more else ""
            yield self.found(
                f"{rule.id} is not met, and fast import changes nothing in the guest, so it "
                f"must be fixed before upload: {first.message}{tail}",
                *first.evidence,
                *(f"also: {f.message}" for f in found[1:_MAX_QUOTED]),
                *((f"and {len(found) - _MAX_QUOTED} more",) if len(found) > _MAX_QUOTED else ()),
                advice=first.advice or rule.advice,
            )


class FastRawRule(_OptimizedRule):
    """What it checks: with fast import (``--fast-import``, or the quick-import API), the file
    is RAW with a bitmap file, or ZVHD2 (IMG-FAST-ZVHD2 judges those); the bitmap file (given
    with ``--bitmap``, or the file with the image's base name and ``.mf`` beside it) matches
    the RAW image: its size, block count and checksums, and a sample of blocks that always
    includes the first, the last and blocks marked empty where the file stores data; and the
    guest is optimized: none of IMG-DRIVERS, IMG-NET-RULES, IMG-NET-DHCP, IMG-HW-BINDING,
    IMG-FSTAB-DATA-DISK, IMG-FSTAB-UUID, IMG-CLOUD-INIT and IMG-CONSOLE reports a warning or
    an error. Each unmet rule is one finding, quoting that rule's own message and advice.

    Why it matters: fast import stores the file without converting it and copies only the
    blocks the bitmap marks, so a stale bitmap silently loses data, and nothing in the guest
    is adjusted for the platform: a server from an image that is not optimized may not find
    its disk, get no network, or keep no way to log in. Files over 128 GiB can only be
    imported this way.

    How to fix: convert other formats with ``imageport convert IN OUT.zvhd2`` (or to RAW with
    ``-O raw``); make the bitmap from the final RAW with ``imageport bitmap disk.raw`` (writes
    ``disk.mf``) and upload both to the same bucket; fix each unmet rule as its advice says
    (on the source machine, before exporting the image).

    Example: a 200 GiB ``disk.raw`` whose ``disk.mf`` was made before the disk was last
    written reports "block 3 (bytes 6291456..8388607) holds data but the bitmap marks it
    empty"; a vmdk checked with ``--fast-import`` reports "fast import takes RAW (with a bitmap
    file) or ZVHD2; this file is vmdk".
    """

    id = "IMG-FAST-RAW"
    severity = Severity.ERROR
    title = "Fast import of RAW needs the image optimized and a matching bitmap file"
    advice = (
        "Make the bitmap with `imageport bitmap disk.raw` (writes disk.mf) and fix every "
        "optimization rule before uploading."
    )
    title_zh = "RAW 快速导入需要优化过的镜像和匹配的位表文件"
    advice_zh = (
        "用 `imageport bitmap disk.raw` 生成位表文件（disk.mf），并在上传前修复所有优化规则。"
    )

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        c = facts.container
        if not facts.options.fast_import or c.format == "zvhd2" or not c.accepted:
            return  # not fast import; IMG-FAST-ZVHD2; IMG-FORMAT refuses the file anyway
        wrong = tuple(self.format_findings(c))
        if wrong:
            yield from wrong
            return
        yield from self.bitmap_findings(facts.bitmap)
        yield from self._optimized(facts)

    def format_findings(self, c: Container) -> Iterator[Finding]:
        """The finding for a file fast import does not take (neither RAW nor ZVHD2): known
        from the header alone, so registration refuses it too
        (:mod:`imageport.service.images.header_checks`)."""
        if c.format not in FAST_FORMATS:
            yield self.found(
                f"Fast import takes RAW (with a bitmap file) or ZVHD2; this file is {c.format}.",
                f"detected format: {c.format}" + (f" ({c.variant})" if c.variant else ""),
                advice="Convert it: `imageport convert IN OUT.zvhd2` (or `imageport convert "
                "IN OUT.raw` and then `imageport bitmap OUT.raw`), or use the normal import.",
            )

    def bitmap_findings(self, bitmap: BitmapCheck | None) -> Iterator[Finding]:
        """The findings about a RAW image's bitmap file (None: there is none)."""
        if bitmap is None:
            yield self.found(
                "No bitmap file was given: fast import of a RAW image needs one, with the "
                "image's base name and the extension .mf, beside the image.",
                "bitmap file: none (give it with --bitmap, or put IMAGE.mf beside IMAGE.raw)",
                advice="Make it with `imageport bitmap disk.raw` (writes disk.mf), upload it "
                "beside the image, and check with `--bitmap disk.mf`.",
            )
            return
        if bitmap.ok:
            return
        # the parser names the file itself; say it once
        problems = [
            p.removeprefix(f"{self.id}: ").removeprefix(f"bitmap file {bitmap.path} ")
            for p in bitmap.problems
        ]
        where = "found beside the image" if bitmap.origin == "beside" else "given"
        yield self.found(
            f"The bitmap file {bitmap.path} does not match this RAW image: {problems[0]}",
            f"bitmap file: {bitmap.path} ({where})",
            *problems[1:],
            *(
                (f"blocks checked: {bitmap.blocks_checked} of {bitmap.block_count}",)
                if bitmap.block_count is not None
                else ()
            ),
            advice=f"Build the bitmap again from the final image (`imageport bitmap IMAGE -o "
            f"{bitmap.path}`) after the last change to it, and upload both together.",
        )


class FastZvhd2Rule(_OptimizedRule):
    """What it checks: a ZVHD2 file checked for fast import (``--fast-import``, or the
    quick-import API) holds an optimized guest: none of IMG-DRIVERS, IMG-NET-RULES,
    IMG-NET-DHCP, IMG-HW-BINDING, IMG-FSTAB-DATA-DISK, IMG-FSTAB-UUID, IMG-CLOUD-INIT and
    IMG-CONSOLE reports a warning or an error. Each unmet rule is one finding, quoting that
    rule's own message and advice. (The ZVHD2 structures themselves are IMG-FORMAT's.)

    Why it matters: fast import stores the ZVHD2 as it is and changes nothing in the guest; a
    server from an image that is not optimized may not find its disk, get no network, or
    leave no console log to diagnose it with.

    How to fix: fix each unmet rule as its advice says on the source machine (or on a RAW
    copy), then write the ZVHD2 again with ``imageport convert disk.raw disk.zvhd2``.

    Example: a ZVHD2 of a guest without cloud-init reports "IMG-CLOUD-INIT is not met, and
    fast import changes nothing in the guest ...: cloud-init is not installed".
    """

    id = "IMG-FAST-ZVHD2"
    severity = Severity.ERROR
    title = "Fast import of ZVHD2 needs the image optimized"
    advice = "Fix every optimization rule in the source, then write the ZVHD2 again."
    title_zh = "ZVHD2 快速导入需要优化过的镜像"
    advice_zh = "在源系统中修复所有优化规则，然后重新生成 ZVHD2 文件。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        if facts.options.fast_import and facts.container.format == "zvhd2":
            yield from self._optimized(facts)
