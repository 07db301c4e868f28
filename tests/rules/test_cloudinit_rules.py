"""IMG-CLOUD-INIT on synthetic guest disks, through the check's inspection."""

from __future__ import annotations

from pathlib import Path

from imageport.findings import Finding, Severity
from imageport.rules.base import CheckOptions, ImageFacts
from imageport.rules.cloudinit import CloudInitRule
from imageport.rules.engine import run_rules
from imageport.service.tools.check import inspect_source
from imageport.source import FileSource
from support import guest_fixtures as gf
from support import network_fixtures as nf


def run(path: Path) -> list[Finding]:
    """IMG-CLOUD-INIT's findings for the image at ``path``, as the check computes them."""
    with FileSource(path) as src:
        found = inspect_source(src)
        facts = ImageFacts(found.container, found.allocated_bytes, CheckOptions(), found.guest)
        return list(run_rules((CloudInitRule(),), facts))


def test_vendor_configuration_passes() -> None:
    assert run(nf.debian_good()) == []


def test_absent_cloud_init_says_how_to_install_it_per_family() -> None:
    (deb,) = run(gf.build_guest("base"))
    assert deb.severity is Severity.WARNING and "not installed" in deb.message
    assert "apt-get install cloud-init" in deb.advice
    assert "datasource_list: [ OpenStack ]" in deb.advice
    (rhel,) = run(nf.centos_static())
    assert "yum install cloud-init" in rhel.advice


def test_datasource_list_without_openstack_quotes_the_line() -> None:
    (f,) = run(nf.debian_static())
    assert f.severity is Severity.WARNING
    assert "does not include OpenStack" in f.message
    assert (
        f.evidence[0] == "/etc/cloud/cloud.cfg.d/90_dpkg.cfg:2: datasource_list: [ NoCloud, None ]"
    )
    assert "/etc/cloud/cloud.cfg.d/05_logging.cfg" in f.evidence[1]
    assert "metadata_urls: ['http://169.254.169.254']" in f.advice


def test_disabled_and_missing_stages_and_unreadable_config() -> None:
    found = run(nf.suse_disabled())
    messages = [f.message for f in found]
    assert len(found) == 3, messages
    off, stages, config = found
    assert "switched off" in off.message
    assert "disabled by /etc/cloud/cloud-init.disabled: (the file exists)" in off.evidence
    assert off.advice == "Delete /etc/cloud/cloud-init.disabled."
    assert "cloud-init.service, cloud-config.service will not run" in stages.message
    assert "systemctl enable" in stages.advice
    assert "50_cycle.cfg" in config.evidence[0]


def test_kernel_command_line_switch_says_how_to_regenerate_grub() -> None:
    path = nf.cloud_init_off_on_kernel_cmdline()
    off = run(path)[0]
    assert (
        off.evidence[1]
        == 'disabled by /etc/default/grub:2: GRUB_CMDLINE_LINUX="quiet cloud-init=disabled"'
    )
    assert "run `update-grub`" in off.advice


def test_default_datasource_list_passes_with_an_info_note() -> None:
    (f,) = run(nf.rpm_cloud_init_default())
    assert f.severity is Severity.INFO
    assert any("metadata_urls is not set" in e for e in f.evidence)
    assert any("datasource_list is not set" in e for e in f.evidence)
    assert any("network: {config: disabled}" in e for e in f.evidence)
    assert not any("manage_etc_hosts" in e for e in f.evidence)  # Debian-only advice


def test_silent_without_a_guest() -> None:
    assert run(gf.empty_disk()) == []
