"""IMG-CLOUD-INIT fix: a drop-in with the platform's datasources where cloud-init is installed,
its off switches undone where that is safe, and a note where it is not installed."""

from __future__ import annotations

from imageport.configure.edits import ChangeKind, OpKind
from imageport.configure.fixes.cloud_init import DROP_IN, drop_in, without_disabled_arg
from imageport.findings import Severity
from imageport.rules.cloudinit import CloudInitRule
from support import guest_fixtures as gf
from support import network_fixtures as nf
from support.configure_trees import applied
from support.fix_runs import findings, plan
from support.guest_images import guest_image

RULE = CloudInitRule.id


def test_the_drop_in_holds_the_vendors_settings() -> None:
    assert drop_in("debian").splitlines()[2:] == [
        "datasource_list: [ ConfigDrive, OpenStack ]",
        "datasource:",
        "  OpenStack:",
        "    metadata_urls: ['http://169.254.169.254']",
        "network: {config: disabled}",
        "manage_etc_hosts: localhost",
    ]
    assert "manage_etc_hosts" not in drop_in("rhel")  # the vendor asks it of Debian/Ubuntu


def test_cloud_init_disabled_comes_off_with_its_space() -> None:
    assert without_disabled_arg("quiet cloud-init=disabled ro") == "quiet ro"
    assert without_disabled_arg("cloud-init=disabled ro") == "ro"
    assert without_disabled_arg("ro cloud-init=disabled") == "ro"
    assert without_disabled_arg("ro cloud-init=disabledx") == "ro cloud-init=disabledx"


def test_the_debian_defects_image_gets_the_drop_in() -> None:
    result = plan(guest_image("gpt-bios-esp-ext4-defects"), {RULE})
    (change,) = result.changes
    assert (change.path, change.kind) == (DROP_IN, ChangeKind.CREATED)
    assert "datasource_list" in change.why and "own files are unchanged" in change.why
    (op,) = result.operations
    assert (op.path, op.kind, op.expect, op.mode) == (DROP_IN, OpKind.WRITE, "absent", 0o644)
    assert op.data == drop_in("debian").encode()


def test_a_datasource_list_without_openstack_is_overridden_and_the_rule_then_passes() -> None:
    root = nf.cloud_init_deb({"90_dpkg.cfg": nf.DPKG_CFG})
    before = gf.build_guest("fix-ci-dpkg", root=root)
    (finding,) = findings(before, CloudInitRule())
    assert "does not include OpenStack" in finding.message
    result = plan(before, {RULE})
    assert [op.path for op in result.operations] == [DROP_IN]  # 90_dpkg.cfg is not touched
    new_root, boot = applied(result.operations, root)
    after = gf.build_guest("fix-ci-dpkg-after", root=new_root, boot=boot)
    assert findings(after, CloudInitRule()) == []


def test_off_switches_are_undone_and_a_stage_never_enabled_is_noted() -> None:
    root = {
        **nf.cloud_init_deb({"99_openstack.cfg": nf.VENDOR_CFG}),
        "etc/systemd/system/cloud-init.target.wants/cloud-final.service": None,
        "etc/systemd/system/cloud-init.service": gf.Symlink("/dev/null"),
        "etc/cloud/cloud-init.disabled": "",
        "etc/default/grub": 'GRUB_CMDLINE_LINUX="quiet cloud-init=disabled"\n',
    }
    before = gf.build_guest("fix-ci-off", root=root)
    assert len(findings(before, CloudInitRule())) == 2  # switched off; stages not enabled
    result = plan(before, {RULE})
    assert [(c.path, c.kind) for c in result.changes] == [
        ("/etc/cloud/cloud-init.disabled", ChangeKind.REMOVED),
        ("/etc/default/grub", ChangeKind.EDITED),
        ("/etc/systemd/system/cloud-init.service", ChangeKind.REMOVED),
    ]
    assert result.changes[1].diff[1] == '+GRUB_CMDLINE_LINUX="quiet"'
    (note,) = result.notes
    assert "systemctl enable cloud-final.service" in note.text
    new_root, boot = applied(result.operations, root)
    after = gf.build_guest("fix-ci-off-after", root=new_root, boot=boot)
    (left,) = findings(after, CloudInitRule())
    assert "not all enabled: cloud-final.service" in left.message


def test_where_it_is_not_installed_nothing_changes_and_the_cache_is_named() -> None:
    result = plan(gf.build_guest("base"), {RULE})
    assert result.operations == ()
    (note,) = result.notes
    assert "not installed" in note.text and "apt-get install cloud-init" in note.text
    deb = "/var/cache/apt/archives/cloud-init_22.4.2-1_all.deb"
    cached = gf.build_guest("fix-ci-cache", root={deb[1:]: b"!<arch>\n"})
    (note,) = plan(cached, {RULE}).notes
    assert deb in note.text and "not installed here" in note.text


def test_a_file_read_after_the_drop_in_is_named_as_still_winning() -> None:
    root = nf.cloud_init_deb({"99_zz.cfg": "datasource_list: [ NoCloud ]\n"})
    result = plan(gf.build_guest("fix-ci-later", root=root), {RULE})
    (note,) = result.notes
    assert "/etc/cloud/cloud.cfg.d/99_zz.cfg:1: datasource_list: [ NoCloud ]" in note.text


def test_a_guest_set_up_as_the_vendor_asks_is_left_alone() -> None:
    ready = nf.debian_good()
    assert [f.severity for f in findings(ready, CloudInitRule())] == []
    assert plan(ready, {RULE}).changes == ()


def test_info_only_differences_are_fixed_too() -> None:
    root = nf.cloud_init_deb({"50_ds.cfg": "datasource_list: [ OpenStack ]\n"})
    before = gf.build_guest("fix-ci-info", root=root)
    assert [f.severity for f in findings(before, CloudInitRule())] == [Severity.INFO]
    result = plan(before, {RULE})
    new_root, boot = applied(result.operations, root)
    after = gf.build_guest("fix-ci-info-after", root=new_root, boot=boot)
    assert findings(after, CloudInitRule()) == []
