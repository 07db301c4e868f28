"""Cloud-init in the guest: installed or not, enabled at boot, and its merged configuration.

Installed is read from what a package leaves on the disk: the ``cloud-init`` command, the
``cloudinit`` Python package (whose ``version.py`` names the version) and, on Debian-family
systems, the ``cloud-init`` stanza of dpkg's status database. The RPM database (Berkeley DB
or SQLite) is not read: on RPM systems the files themselves are the evidence.

Enabled means its boot stages are linked into a target (:mod:`imageport.guest.facts.units`) and no
switch turns it off: ``/etc/cloud/cloud-init.disabled`` or ``cloud-init=disabled`` on the
kernel command line (read from the boot configuration files, since the running command line
is not in an image).

The configuration is ``/etc/cloud/cloud.cfg`` followed by ``/etc/cloud/cloud.cfg.d/*.cfg`` in
lexical order, later files overriding earlier ones key by key, as cloud-init merges them
(cloud-init's documentation: "Base configuration", "Datasources", "Network configuration").
Only the settings the rules need are kept, each with the file and line that set it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.facts.units import read_units
from imageport.guest.files.configfiles import Quote, exists, is_file, list_dir, quote, read_config
from imageport.guest.files.mounts import GuestFiles
from imageport.guest.files.safeyaml import YamlDoc, YamlRefused, load_yaml

COMMANDS = ("/usr/bin/cloud-init", "/bin/cloud-init", "/usr/local/bin/cloud-init")
LIB_DIRS = ("/usr/lib", "/usr/lib64", "/usr/local/lib")
#: The boot stages; each tuple lists the names one stage has had across versions
#: (24.3 renamed cloud-init.service to cloud-init-network.service).
STAGES = (
    ("cloud-init-local.service",),
    ("cloud-init.service", "cloud-init-network.service"),
    ("cloud-config.service",),
    ("cloud-final.service",),
)
DISABLED_FILE = "/etc/cloud/cloud-init.disabled"
CMDLINE_FILES = (
    "/etc/default/grub",
    "/etc/kernel/cmdline",
    "/boot/grub/grub.cfg",
    "/boot/grub2/grub.cfg",
)
CONFIG_FILE = "/etc/cloud/cloud.cfg"
CONFIG_DIR = "/etc/cloud/cloud.cfg.d"
#: The settings kept, by key path.
SETTINGS = (
    ("datasource_list",),
    ("datasource", "OpenStack", "metadata_urls"),
    ("network", "config"),
    ("manage_etc_hosts",),
    ("users",),
    ("ssh_pwauth",),
    ("disable_root",),
    ("chpasswd",),
    ("password",),
    ("ssh_authorized_keys",),
)
#: Largest dpkg status database read.
MAX_DPKG_STATUS_BYTES = 32 << 20
#: Bytes of cloud-init YAML parsed in all.
MAX_YAML_TOTAL = 2 << 20
_PY_DIR = re.compile(r"^python[23](\.\d{1,3})?$")
_VERSION = re.compile(
    r"""^(__VERSION__|_PACKAGED_VERSION)\s*=\s*["']([^"'@]{1,64})["']""", re.MULTILINE
)


@dataclass(frozen=True, slots=True)
class Setting:
    """A configuration value and the line that set it."""

    value: Any
    where: Quote


@dataclass(frozen=True, slots=True)
class CloudInitFacts:
    installed: bool
    #: what shows it is installed (paths, the dpkg stanza)
    evidence: tuple[str, ...]
    version: str | None
    #: the ``cloudinit`` Python package directory, when found
    package_dir: str | None
    #: boot stages linked into a target, and those that are not (first name of each)
    units_enabled: tuple[str, ...]
    units_missing: tuple[str, ...]
    #: the marker file or kernel command line lines that disable cloud-init
    disabled_by: tuple[Quote, ...]
    #: configuration files read, in merge order
    config_files: tuple[str, ...]
    #: the merged settings of :data:`SETTINGS`, by dotted key path
    settings: dict[str, Setting]
    #: whether the installed package ships the OpenStack datasource (None: package not found)
    openstack_module: bool | None
    problems: tuple[str, ...]

    def setting(self, key: str) -> Setting | None:
        return self.settings.get(key)

    @property
    def datasource_list(self) -> tuple[str, ...] | None:
        """The configured datasource list; None when unset (cloud-init's built-in list,
        which includes OpenStack)."""
        s = self.settings.get("datasource_list")
        return None if s is None else as_names(s.value)

    @property
    def uses_openstack(self) -> bool:
        names = self.datasource_list
        return names is None or "OpenStack" in names

    @property
    def network_config_disabled(self) -> bool:
        s = self.settings.get("network.config")
        return s is not None and str(s.value).strip().lower() == "disabled"

    @property
    def active(self) -> bool:
        """Installed, all stages enabled and not switched off."""
        return self.installed and not self.units_missing and not self.disabled_by


def as_names(value: Any) -> tuple[str, ...]:
    """A datasource list as names: a YAML list, or a string like ``[ NoCloud, None ]``."""
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value[:256])
    if isinstance(value, str):
        return tuple(p.strip() for p in value.strip().strip("[]").split(",") if p.strip())
    return () if value is None else (str(value),)


def _dig(data: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False, None
        data = data[key]
    return True, data


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return (
            "["
            + ", ".join(_shown(v) for v in value[:16])
            + (", ..." if len(value) > 16 else "")
            + "]"
        )
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in list(value.items())[:8]) + "}"
    return str(value)


def merge_settings(docs: list[tuple[str, str, YamlDoc]]) -> dict[str, Setting]:
    """The :data:`SETTINGS` of ``docs`` ((path, text, doc) in merge order), later files
    winning, each with the line that set it."""
    settings: dict[str, Setting] = {}
    for path, text, doc in docs:
        lines = text.splitlines()
        for key in SETTINGS:
            found, value = _dig(doc.data, key)
            if not found:
                continue
            no = doc.line(*key)
            raw = lines[no - 1].strip() if 0 < no <= len(lines) else ""
            if not raw.partition(":")[2].strip() or isinstance(value, dict):
                raw = f"{'.'.join(key)}: {_shown(value)}"
            settings[".".join(key)] = Setting(value, quote(path, no, raw))
    return settings


def parse_dpkg_stanza(status: str, package: str) -> tuple[str, str] | None:
    """``(Status, Version)`` of ``package`` in a dpkg status database, or None."""
    marker = f"Package: {package}\n"
    if status.startswith(marker):
        start = 0
    else:
        at = status.find("\n" + marker)
        if at < 0:
            return None
        start = at + 1
    end = status.find("\n\n", start)
    stanza = status[start : end if end >= 0 else len(status)]
    fields: dict[str, str] = {}
    for line in stanza.splitlines()[:200]:
        key, sep, value = line.partition(":")
        if sep and not key.startswith((" ", "\t")):
            fields[key] = value.strip()
    return fields.get("Status", ""), fields.get("Version", "")


def _package_dir(files: GuestFiles, problems: list[str]) -> str | None:
    for lib in LIB_DIRS:
        for name, _ in list_dir(files, lib, problems):
            if not _PY_DIR.match(name):
                continue
            for sub in ("dist-packages", "site-packages"):
                candidate = f"{lib}/{name}/{sub}/cloudinit"
                if exists(files, f"{candidate}/__init__.py"):
                    return candidate
    return None


def _disabled_by(files: GuestFiles, problems: list[str]) -> list[Quote]:
    found = []
    if exists(files, DISABLED_FILE):
        found.append(quote(DISABLED_FILE, 0, "(the file exists)"))
    for path in CMDLINE_FILES:
        text = read_config(files, path, problems) or ""
        for no, line in enumerate(text.splitlines()[:100_000], 1):
            if "cloud-init=disabled" in line and not line.lstrip().startswith("#"):
                found.append(quote(path, no, line))
                break
    return found


def read_cloud_init(guest: GuestFacts) -> CloudInitFacts:
    """Read what the guest has of cloud-init. Never raises; problems are listed."""
    files = guest.files
    problems: list[str] = []
    evidence = [p for p in COMMANDS if is_file(files, p)][:1]  # /bin is often /usr/bin
    version: str | None = None
    package_dir = _package_dir(files, problems)
    openstack: bool | None = None
    if package_dir is not None:
        evidence.append(package_dir)
        openstack = exists(files, f"{package_dir}/sources/DataSourceOpenStack.py")
        found = {
            m[1]: m[2]
            for m in _VERSION.finditer(
                read_config(files, f"{package_dir}/version.py", problems) or ""
            )
        }
        version = found.get("_PACKAGED_VERSION") or found.get("__VERSION__")
    status = read_config(files, "/var/lib/dpkg/status", problems, MAX_DPKG_STATUS_BYTES)
    stanza = parse_dpkg_stanza(status, "cloud-init") if status else None
    if stanza is not None and stanza[0].endswith(" installed"):
        evidence.append(
            f"/var/lib/dpkg/status: Package: cloud-init, Status: {stanza[0]}, Version: {stanza[1]}"
        )
        version = stanza[1] or version

    units = guest.derive(read_units)
    enabled = [n for names in STAGES for n in names if units.is_enabled(n)]
    missing = [names[0] for names in STAGES if not any(units.is_enabled(n) for n in names)]
    if units.is_enabled("cloud-init-main.service"):
        enabled.append("cloud-init-main.service")

    docs: list[tuple[str, str, YamlDoc]] = []
    paths = [CONFIG_FILE] + [
        f"{CONFIG_DIR}/{n}" for n, _ in list_dir(files, CONFIG_DIR, problems) if n.endswith(".cfg")
    ]
    read: list[str] = []
    budget = MAX_YAML_TOTAL
    for path in paths:
        text = read_config(files, path, problems)
        if text is None:
            continue
        read.append(path)
        budget -= len(text)
        if budget < 0:
            problems.append(
                f"{path}: not parsed, more than {MAX_YAML_TOTAL} bytes of "
                "cloud-init configuration in all"
            )
            continue
        try:
            docs.append((path, text, load_yaml(text)))
        except YamlRefused as exc:
            problems.append(f"{path}: {exc}")
    return CloudInitFacts(
        installed=bool(evidence),
        evidence=tuple(evidence),
        version=version,
        package_dir=package_dir,
        units_enabled=tuple(enabled),
        units_missing=tuple(missing),
        disabled_by=tuple(_disabled_by(files, problems)),
        config_files=tuple(read),
        settings=merge_settings(docs),
        openstack_module=openstack,
        problems=tuple(problems),
    )
