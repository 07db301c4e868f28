"""IMG-CLOUD-INIT: cloud-init installed, enabled and pointed at the platform's metadata service."""

from __future__ import annotations

from collections.abc import Iterator

from imageport.findings import Finding, Severity
from imageport.guest.facts.cloudinit import COMMANDS, DISABLED_FILE, CloudInitFacts, read_cloud_init
from imageport.rules.base import ImageFacts, Rule

#: The configuration the vendor's checklist asks for (its IMS user guide, "Optimizing a Linux
#: Private Image", on configuring Cloud-Init).
VENDOR_CONFIG = (
    "datasource_list: [ OpenStack ]\n"
    "datasource:\n"
    "  OpenStack:\n"
    "    metadata_urls: ['http://169.254.169.254']\n"
    "network: {config: disabled}"
)
CONFIG_ADVICE = (
    "Put the platform's settings in a file read after the others, e.g. "
    "/etc/cloud/cloud.cfg.d/99_openstack.cfg:\n" + VENDOR_CONFIG + "\n"
    "(with cloud-init's network configuration disabled, keep every NIC on DHCP in the "
    "system's own network files)."
)
CONFIG_ADVICE_ZH = (
    "将平台的设置写入最后读取的配置文件，例如 "
    "/etc/cloud/cloud.cfg.d/99_openstack.cfg：\n" + VENDOR_CONFIG + "\n"
    "（关闭 cloud-init 的网络配置后，请在系统自己的网络配置文件中让每块网卡使用 DHCP）。"
)
_INSTALL = {
    "debian": "apt-get install cloud-init",
    "rhel": "yum install cloud-init (dnf install cloud-init on newer releases)",
    "suse": "zypper install cloud-init",
}
_ENABLE = (
    "systemctl enable cloud-init-local.service cloud-init.service cloud-config.service "
    "cloud-final.service"
)
_GRUB = {
    "debian": "update-grub",
    "rhel": "grub2-mkconfig -o /boot/grub2/grub.cfg",
    "suse": "grub2-mkconfig -o /boot/grub2/grub.cfg",
}

#: How to undo each switch that turns cloud-init off, by the file it is in.
_UNDISABLE = {
    DISABLED_FILE: f"Delete {DISABLED_FILE}.",
    "/etc/default/grub": "Remove `cloud-init=disabled` from GRUB_CMDLINE_LINUX in "
    "/etc/default/grub and run `{grub}`.",
    "/etc/kernel/cmdline": "Remove `cloud-init=disabled` from /etc/kernel/cmdline and "
    "reinstall the kernel's boot entry (kernel-install).",
    "/boot/grub/grub.cfg": "Remove `cloud-init=disabled` from the kernel command line and run "
    "`{grub}`.",
    "/boot/grub2/grub.cfg": "Remove `cloud-init=disabled` from the kernel command line and "
    "run `{grub}`.",
}


def install_command(family: str) -> str:
    """How to install cloud-init on ``family``."""
    return _INSTALL.get(
        family, "install the cloud-init package with the distribution's package manager"
    )


class CloudInitRule(Rule):
    """What it checks: cloud-init is installed (the ``cloud-init`` command, its Python
    package or the dpkg database), its four boot stages (``cloud-init-local``, ``cloud-init``,
    ``cloud-config``, ``cloud-final``) are enabled, nothing disables it
    (``/etc/cloud/cloud-init.disabled``, ``cloud-init=disabled`` on the kernel command line),
    and its ``datasource_list`` (``/etc/cloud/cloud.cfg`` merged with
    ``/etc/cloud/cloud.cfg.d/*.cfg``) includes ``OpenStack`` or is left at the default, which
    does. When all that holds, differences from the vendor's recommended settings
    (``metadata_urls``, ``network: {config: disabled}``, ``manage_etc_hosts``) are reported
    for information.

    Why it matters: the platform injects the password, SSH keys, host name and user data
    through cloud-init's OpenStack datasource. Without it, a server from the image keeps the
    image's own credentials and nothing chosen at creation applies. The vendor recommends it
    rather than requiring it; IMG-LOGIN judges whether the server can be logged in to at all.

    How to fix: install cloud-init (``apt-get install cloud-init``, ``yum install
    cloud-init``, ``zypper install cloud-init``), enable its stages with ``systemctl enable
    cloud-init-local cloud-init cloud-config cloud-final``, and add a file
    ``/etc/cloud/cloud.cfg.d/99_openstack.cfg`` with ``datasource_list: [ OpenStack ]``,
    ``datasource: {OpenStack: {metadata_urls: ['http://169.254.169.254']}}`` and
    ``network: {config: disabled}``.

    Example: ``/etc/cloud/cloud.cfg.d/90_dpkg.cfg:2: datasource_list: [ NoCloud, None ]`` is
    reported: servers would wait for a NoCloud seed that the platform never provides.
    """

    id = "IMG-CLOUD-INIT"
    severity = Severity.WARNING
    title = "cloud-init should be installed, enabled and use the OpenStack datasource"
    advice = CONFIG_ADVICE
    title_zh = "应安装并启用 cloud-init，且使用 OpenStack 数据源"
    advice_zh = CONFIG_ADVICE_ZH

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        guest = facts.guest
        if guest is None or guest.layout.root is None:
            return
        family = guest.os.family if guest.os is not None else "other"
        ci = guest.derive(read_cloud_init)
        if not ci.installed:
            yield self.found(
                "cloud-init is not installed: passwords, SSH keys and user data chosen when a "
                "server is created cannot be injected.",
                f"none of {', '.join(COMMANDS)} exists",
                "no cloudinit Python package under /usr/lib*/python*/{dist,site}-packages",
                "no installed cloud-init package in /var/lib/dpkg/status (the RPM database "
                "is not read)",
                advice=f"Install it ({install_command(family)}), then {_ENABLE}. " + CONFIG_ADVICE,
            )
            return
        yield from self._enablement(ci, family)
        yield from self._datasource(ci, family)

    def _enablement(self, ci: CloudInitFacts, family: str) -> Iterator[Finding]:
        installed = f"installed: {', '.join(ci.evidence)}" + (
            f" (version {ci.version})" if ci.version else ""
        )
        if ci.disabled_by:
            yield self.found(
                "cloud-init is installed but switched off, so it does nothing at boot.",
                installed,
                *(f"disabled by {q}" for q in ci.disabled_by),
                advice=" ".join(
                    _UNDISABLE[q.path].format(
                        grub=_GRUB.get(family, "grub2-mkconfig -o /boot/grub2/grub.cfg")
                    )
                    for q in ci.disabled_by
                    if q.path in _UNDISABLE
                ),
            )
        if ci.units_missing:
            yield self.found(
                f"cloud-init's boot stages are not all enabled: {', '.join(ci.units_missing)} "
                "will not run.",
                installed,
                "enabled: " + (", ".join(ci.units_enabled) or "none"),
                "not enabled (no link in /etc/systemd/system/*.wants, "
                "/usr/lib/systemd/system/*.wants or /etc/rc?.d): " + ", ".join(ci.units_missing),
                advice=f"Enable them: {_ENABLE} (on SysV systems: chkconfig <name> on).",
            )

    def _datasource(self, ci: CloudInitFacts, family: str) -> Iterator[Finding]:
        if ci.problems:
            yield self.found(
                "Part of cloud-init's configuration could not be read; cloud-init may ignore "
                "it too.",
                *ci.problems,
                advice="Fix or remove the file: it must be valid YAML, and anchors and "
                "aliases must not make cyclic or huge data.",
            )
        setting = ci.setting("datasource_list")
        if not ci.uses_openstack and setting is not None:
            yield self.found(
                "cloud-init's datasource_list does not include OpenStack: servers will not "
                "get their password, keys or user data from the platform.",
                str(setting.where),
                "merged from: " + ", ".join(ci.config_files),
                advice=f"Set `datasource_list: [ OpenStack ]` in the file above or in a file "
                f"read after it. {CONFIG_ADVICE}",
            )
            return
        if ci.openstack_module is False:
            yield self.found(
                "The installed cloud-init has no OpenStack datasource module.",
                f"{ci.package_dir}/sources/DataSourceOpenStack.py does not exist",
                advice=f"Install the distribution's full cloud-init package "
                f"({install_command(family)}).",
            )
        if ci.units_missing or ci.disabled_by:
            return
        yield from self._vendor_settings(ci, family)

    def _vendor_settings(self, ci: CloudInitFacts, family: str) -> Iterator[Finding]:
        notes: list[str] = []
        if ci.datasource_list is None:
            notes.append(
                "datasource_list is not set: cloud-init probes all its datasources "
                "(vendor: datasource_list: [ OpenStack ])"
            )
        urls = ci.setting("datasource.OpenStack.metadata_urls")
        if urls is None:
            notes.append(
                "datasource.OpenStack.metadata_urls is not set (vendor: ['http://169.254.169.254'])"
            )
        if not ci.network_config_disabled:
            net = ci.setting("network.config")
            notes.append(
                f"{net.where if net else 'network: {config: ...} is not set'} "
                "(vendor: network: {config: disabled})"
            )
        hosts = ci.setting("manage_etc_hosts")
        if family == "debian" and (hosts is None or str(hosts.value).lower() != "localhost"):
            notes.append(
                f"{hosts.where if hosts else 'manage_etc_hosts is not set'} "
                "(vendor, Debian and Ubuntu: manage_etc_hosts: localhost)"
            )
        if notes:
            yield self.found(
                "cloud-init is set up; some settings differ from the vendor's checklist.",
                *notes,
                severity=Severity.INFO,
            )
