"""Cloud-init facts: installation evidence, stages, switches and the merged configuration."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imageport.disk.raw import RawDisk
from imageport.guest.facts.cloudinit import (
    CloudInitFacts,
    as_names,
    merge_settings,
    parse_dpkg_stanza,
    read_cloud_init,
)
from imageport.guest.facts.inspect import inspect_guest
from imageport.guest.files.safeyaml import load_yaml
from imageport.source import FileSource
from support import guest_fixtures as gf
from support import network_fixtures as nf


@contextmanager
def cloud_init(path: Path) -> Iterator[CloudInitFacts]:
    with FileSource(path) as src:
        yield inspect_guest(RawDisk(src)).derive(read_cloud_init)


def test_dpkg_stanza() -> None:
    assert parse_dpkg_stanza(nf.DPKG_STATUS, "cloud-init") == ("install ok installed", "22.4.2-1")
    assert parse_dpkg_stanza(nf.DPKG_STATUS, "adduser") == ("install ok installed", "3.134")
    assert parse_dpkg_stanza(nf.DPKG_STATUS, "cloud") is None
    assert parse_dpkg_stanza("Package: cloud-init-base\nStatus: x\n", "cloud-init") is None


def test_datasource_names() -> None:
    assert as_names(["NoCloud", "None"]) == ("NoCloud", "None")
    assert as_names("[ OpenStack, None ]") == ("OpenStack", "None")
    assert as_names(None) == () and as_names(3) == ("3",)


def test_later_files_override_and_lines_are_kept() -> None:
    docs = [
        (p, t, load_yaml(t))
        for p, t in (
            (
                "/etc/cloud/cloud.cfg",
                "datasource_list: [ NoCloud ]\nnetwork:\n  config: disabled\n",
            ),
            ("/etc/cloud/cloud.cfg.d/90.cfg", "# c\ndatasource_list:\n  - OpenStack\n  - None\n"),
        )
    ]
    settings = merge_settings(docs)
    assert settings["datasource_list"].value == ["OpenStack", "None"]
    assert (
        str(settings["datasource_list"].where)
        == "/etc/cloud/cloud.cfg.d/90.cfg:2: datasource_list: [OpenStack, None]"
    )
    assert str(settings["network.config"].where) == "/etc/cloud/cloud.cfg:3: config: disabled"


def test_debian_package_with_openstack_config() -> None:
    with cloud_init(nf.debian_good()) as ci:
        assert ci.installed and ci.active and ci.version == "22.4.2-1"
        assert ci.evidence[:2] == (
            "/usr/bin/cloud-init",
            "/usr/lib/python3/dist-packages/cloudinit",
        )
        assert "Version: 22.4.2-1" in ci.evidence[2]
        assert ci.units_enabled == (
            "cloud-init-local.service",
            "cloud-init.service",
            "cloud-config.service",
            "cloud-final.service",
        )
        assert ci.datasource_list == ("OpenStack",) and ci.uses_openstack
        assert ci.network_config_disabled and ci.openstack_module is True
        assert ci.config_files == (
            "/etc/cloud/cloud.cfg",
            "/etc/cloud/cloud.cfg.d/99_openstack.cfg",
        )
        urls = ci.setting("datasource.OpenStack.metadata_urls")
        assert urls is not None and urls.value == ["http://169.254.169.254"]
        assert ci.setting("users") is not None and ci.problems == ()


def test_dpkg_datasource_list_without_openstack() -> None:
    with cloud_init(nf.debian_static()) as ci:
        assert ci.datasource_list == ("NoCloud", "None") and not ci.uses_openstack
        where = ci.setting("datasource_list")
        assert (
            where is not None
            and str(where.where)
            == "/etc/cloud/cloud.cfg.d/90_dpkg.cfg:2: datasource_list: [ NoCloud, None ]"
        )


def test_rpm_install_with_renamed_stage_and_default_list() -> None:
    with cloud_init(nf.rpm_cloud_init_default()) as ci:
        assert ci.installed and ci.version == "23.4" and ci.active
        assert "cloud-init-network.service" in ci.units_enabled
        assert ci.datasource_list is None and ci.uses_openstack
        assert not ci.network_config_disabled


def test_disabled_masked_and_refused_config() -> None:
    with cloud_init(nf.suse_disabled()) as ci:
        assert ci.installed and not ci.active and ci.package_dir is None
        assert [str(q) for q in ci.disabled_by] == [
            "/etc/cloud/cloud-init.disabled: (the file exists)"
        ]
        assert ci.units_missing == ("cloud-init.service", "cloud-config.service")
        assert ci.problems == (
            "/etc/cloud/cloud.cfg.d/50_cycle.cfg: has an alias inside the "
            "node it refers to (a cycle)",
        )


def test_absent() -> None:
    with cloud_init(gf.build_guest("base")) as ci:
        assert not ci.installed and ci.evidence == () and ci.config_files == ()
        assert ci.units_missing and not ci.active


def test_kernel_command_line_switch() -> None:
    path = nf.cloud_init_off_on_kernel_cmdline()
    with cloud_init(path) as ci:
        assert [str(q) for q in ci.disabled_by] == [
            '/etc/default/grub:2: GRUB_CMDLINE_LINUX="quiet cloud-init=disabled"'
        ]
