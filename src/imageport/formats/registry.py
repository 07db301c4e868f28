"""Probe a file against every known container format in one pass.

Every format's ``matches`` sees the same :class:`~imageport.formats.base.ProbeWindow` (the head
and tail of the file, read once). Then:

* no match: the file is raw;
* one match: that format's ``inspect`` parses it;
* more than one: the file is a *polyglot* and is refused (IMG-SAFE), because two readers would
  see two different disks in it. The one accepted overlap, a bootable ISO that also carries an
  MBR or GPT, needs no exception here: partition tables are not formats, so such a file matches
  only ``iso9660``.

Parsing errors become a damaged :class:`Container` rather than an exception; so does any
unexpected exception (fail closed), reported as an internal error.
"""

from __future__ import annotations

from imageport.errors import CorruptImageError, SourceError, UnsupportedImageError
from imageport.formats import (
    foreign,
    iso,
    luks,
    qcow,
    qcow2,
    qed,
    raw,
    vdi,
    vhd,
    vhdx,
    vmdk,
    wrappers,
    zvhd,
)
from imageport.formats.base import (
    UNSUPPORTED_PREFIX,
    Container,
    FormatSpec,
    Hazard,
    ProbeWindow,
)
from imageport.source import ByteSource

#: Every format recognised by magic, in the order they are listed to users.
FORMATS: tuple[FormatSpec, ...] = (
    *qcow2.SPECS,
    *qcow.SPECS,
    *vmdk.SPECS,
    *vhd.SPECS,
    *vhdx.SPECS,
    *vdi.SPECS,
    *qed.SPECS,
    *zvhd.SPECS,
    *iso.SPECS,
    *luks.SPECS,
    *foreign.SPECS,
    *wrappers.SPECS,
)

#: Names of the formats the platform accepts (IMG-FORMAT; the vendor's IMS user guide lists
#: them in "Registering an External Image File as a Private Image").
ACCEPTED_FORMATS: tuple[str, ...] = (
    "qcow2",
    "vmdk",
    "vhd",
    "vhdx",
    "qed",
    "vdi",
    "qcow",
    "raw",
    "zvhd",
    "zvhd2",
)


def matching_formats(window: ProbeWindow) -> list[FormatSpec]:
    """The formats whose magic matches ``window``; a matcher that fails counts as no match."""
    found = []
    for spec in FORMATS:
        try:
            if spec.matches(window):
                found.append(spec)
        except Exception:  # noqa: BLE001, S112 - a matcher must never decide by crashing
            continue
    return found


def probe(source: ByteSource) -> Container:
    """Identify and parse the container of ``source``. Raises only :class:`SourceError`."""
    window = ProbeWindow.read(source)
    matched = matching_formats(window)
    if len(matched) > 1:
        names = ", ".join(spec.name for spec in matched)
        return Container(
            format="polyglot",
            variant=names,
            accepted=False,
            file_size=source.size,
            hazards=(Hazard("polyglot", f"the file is valid as several formats at once: {names}"),),
        )
    spec = matched[0] if matched else raw.SPEC
    try:
        return spec.inspect(source, window)
    except SourceError:
        raise
    except CorruptImageError as exc:
        damage = str(exc)
    except UnsupportedImageError as exc:
        damage = f"{UNSUPPORTED_PREFIX}{exc}"
    except Exception as exc:  # noqa: BLE001 - fail closed: a parser bug must not pass a file
        damage = f"internal error while parsing ({type(exc).__name__}: {exc})"
    return Container(
        format=spec.name,
        variant="damaged",
        accepted=spec.accepted,
        file_size=source.size,
        damage=damage,
    )
