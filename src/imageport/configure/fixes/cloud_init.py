"""IMG-CLOUD-INIT: cloud-init reads the platform's metadata, and nothing switches it off.

Where cloud-init is installed and its merged configuration differs from the vendor's
checklist, one drop-in, :data:`DROP_IN`, sets the platform's datasources (``ConfigDrive``,
which the platform's servers attach, then ``OpenStack``, its metadata service), the metadata
address, ``network: {config: disabled}`` (the system's own network files keep the NIC on
DHCP) and, on Debian and Ubuntu, ``manage_etc_hosts: localhost``. The distribution's own
files are never edited: the drop-in is read last but for files named after it, and when such
a file sets the same keys the fix says so.

Switches that turn cloud-init off are undone where that is safe and reversible: the marker
file ``/etc/cloud/cloud-init.disabled`` is removed, ``cloud-init=disabled`` is taken off the
kernel command lines, and a stage masked in ``/etc/systemd/system`` whose enablement link
exists is unmasked. A stage that is not enabled at all is noted with the command that
enables it (the edits here create no links but masks).

Where cloud-init is not installed, nothing is changed: installing packages offline is out of
scope. The fix says so, and names a cloud-init package found in the guest's package cache.
"""

from __future__ import annotations

import re

from imageport.configure.edits import Edits
from imageport.configure.fixes.cmdline import edit_command_lines
from imageport.guest.facts.cloudinit import (
    CONFIG_DIR,
    DISABLED_FILE,
    STAGES,
    CloudInitFacts,
    read_cloud_init,
)
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.facts.units import read_units
from imageport.guest.files.configfiles import list_dir
from imageport.guest.files.mounts import GuestFiles
from imageport.guest.fs.base import FileType
from imageport.rules.cloudinit import CloudInitRule, install_command

RULE = CloudInitRule.id
DROP_IN = f"{CONFIG_DIR}/99-imageport.cfg"
METADATA_URL = "http://169.254.169.254"
#: The kernel argument that switches cloud-init off.
DISABLED_ARG = "cloud-init=disabled"
#: Where package managers keep downloaded packages: (directory pattern, file prefix). ``*``
#: is one directory level (repository, architecture).
PACKAGE_CACHES = (
    ("/var/cache/apt/archives", "cloud-init_"),
    ("/var/cache/dnf/*/packages", "cloud-init-"),
    ("/var/cache/yum/*/*/*/packages", "cloud-init-"),
    ("/var/cache/zypp/packages/*/*", "cloud-init-"),
)
#: Directories looked into per ``*`` of a cache pattern.
MAX_CACHE_DIRS = 64


def drop_in(family: str) -> str:
    """The drop-in's text for a guest of ``family``."""
    lines = [
        "# Written by imageport's automatic configuration (IMG-CLOUD-INIT): the platform's",
        "# datasources, as the vendor's checklist asks. Delete this file to undo.",
        "datasource_list: [ ConfigDrive, OpenStack ]",
        "datasource:",
        "  OpenStack:",
        f"    metadata_urls: ['{METADATA_URL}']",
        "network: {config: disabled}",
    ]
    if family == "debian":
        lines.append("manage_etc_hosts: localhost")
    return "\n".join(lines) + "\n"


def _differs(ci: CloudInitFacts, family: str) -> list[str]:
    """The keys whose merged value is not the vendor's."""
    keys = []
    if ci.datasource_list is None or "OpenStack" not in ci.datasource_list:
        keys.append("datasource_list")
    if ci.setting("datasource.OpenStack.metadata_urls") is None:
        keys.append("datasource.OpenStack.metadata_urls")
    if not ci.network_config_disabled:
        keys.append("network.config")
    hosts = ci.setting("manage_etc_hosts")
    if family == "debian" and (hosts is None or str(hosts.value).lower() != "localhost"):
        keys.append("manage_etc_hosts")
    return keys


def _overridden(ci: CloudInitFacts, keys: list[str]) -> list[str]:
    """Of ``keys`` (settings not as the vendor asks), those set in a file read after
    :data:`DROP_IN`: that file still wins over the drop-in."""
    return sorted(
        str(setting.where)
        for key, setting in ci.settings.items()
        if key in keys
        and setting.where.path.startswith(CONFIG_DIR + "/")
        and setting.where.path > DROP_IN
    )


def _expand(files: GuestFiles, pattern: str) -> list[str]:
    """The directories ``pattern`` (``*`` = one level) names in the guest, bounded."""
    found = [""]
    problems: list[str] = []
    for part in pattern.strip("/").split("/"):
        if part != "*":
            found = [f"{d}/{part}" for d in found]
            continue
        found = [
            f"{d}/{name}"
            for d in found
            for name, kind in list_dir(files, d or "/", problems, MAX_CACHE_DIRS)
            if kind in (FileType.DIRECTORY, None)
        ][:MAX_CACHE_DIRS]
    return found


def cached_packages(files: GuestFiles) -> list[str]:
    """cloud-init packages left in the guest's package manager caches."""
    problems: list[str] = []
    found: list[str] = []
    for pattern, prefix in PACKAGE_CACHES:
        for directory in _expand(files, pattern):
            found.extend(
                f"{directory}/{name}"
                for name, _ in list_dir(files, directory, problems)
                if name.startswith(prefix) and name.endswith((".deb", ".rpm"))
            )
    return found


def _not_installed(guest: GuestFacts, edits: Edits) -> None:
    text = (
        "cloud-init is not installed; installing packages offline is out of scope, so "
        f"nothing was changed: install it in the guest ({install_command(guest.family)})"
    )
    cached = cached_packages(guest.files)
    if cached:
        text += (
            f"; the guest's package cache holds {', '.join(cached[:4])} (not installed "
            "here: a package's scripts must run in the guest)"
        )
    edits.note(RULE, text)


_DISABLED_WORD = re.compile(r"(?:^|\s+)" + re.escape(DISABLED_ARG) + r"(?=\s|$)")


def without_disabled_arg(args: str) -> str:
    """``args`` without the ``cloud-init=disabled`` word (and the space before it)."""
    kept = _DISABLED_WORD.sub("", args)
    return kept.lstrip() if kept != args and not args[:1].isspace() else kept


def _enable(guest: GuestFacts, edits: Edits, ci: CloudInitFacts) -> None:
    for where in ci.disabled_by:
        if where.path == DISABLED_FILE:
            edits.remove(
                DISABLED_FILE,
                rule=RULE,
                why=f"removed {DISABLED_FILE}, the marker file that switches cloud-init off",
            )
    if any(where.path != DISABLED_FILE for where in ci.disabled_by):
        edit_command_lines(
            guest,
            edits,
            without_disabled_arg,
            rule=RULE,
            what=f"took {DISABLED_ARG} off the kernel command line",
        )
        if any(where.path == "/etc/kernel/cmdline" for where in ci.disabled_by):
            edits.note(
                RULE,
                f"/etc/kernel/cmdline says {DISABLED_ARG}: not changed (kernels installed "
                "later take it); remove it there",
            )
    units = guest.derive(read_units)
    for stage in ci.units_missing:
        names = next(n for n in STAGES if n[0] == stage)
        masked = [n for n in names if n in units.masked]
        for name in masked:
            edits.remove(
                f"/etc/systemd/system/{name}",
                rule=RULE,
                why=f"unmasked {name} (it was linked to /dev/null, so it never ran)",
            )
        if not any(n in units.links for n in masked):
            edits.note(
                RULE,
                f"{stage} is not enabled at boot and no link can be made here: run "
                f"`systemctl enable {stage}` in the guest",
            )


def plan_cloud_init(guest: GuestFacts, edits: Edits) -> None:
    """Point cloud-init at the platform and switch it on, where it is installed."""
    ci = guest.derive(read_cloud_init)
    if not ci.installed:
        _not_installed(guest, edits)
        return
    _enable(guest, edits, ci)
    if ci.openstack_module is False:
        edits.note(
            RULE,
            f"{ci.package_dir} has no OpenStack datasource module: the drop-in cannot make "
            f"it read the platform's metadata; install the full package "
            f"({install_command(guest.family)})",
        )
    for problem in ci.problems:
        edits.note(RULE, f"not changed, cloud-init may ignore it too: {problem}")
    differs = _differs(ci, guest.family)
    if not differs:
        return
    edits.write(
        DROP_IN,
        drop_in(guest.family),
        rule=RULE,
        why=f"added a cloud-init drop-in with the platform's datasources and the vendor's "
        f"settings (was: {', '.join(differs)} not as the vendor asks); the distribution's "
        "own files are unchanged",
        mode=0o644,
    )
    for where in _overridden(ci, differs):
        edits.note(RULE, f"read after {DROP_IN}, so it still wins: {where}; change it there")
