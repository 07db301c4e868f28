"""The network fixes (IMG-NET-RULES, IMG-NET-DHCP with IMG-HW-BINDING) on real guest disks.

Each case: the rules report the defect; the plan names the files with a reason a user can
read; the plan applied to the fixture's tree and the disk built again, the rules no longer
report it, the other rules' findings are what they were, and every other file is as it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from imageport.configure.edits import MAX_EDIT_BYTES, ChangeKind, Edits, OpKind
from imageport.configure.plan import Plan, plan_configuration
from imageport.errors import ImageportError
from imageport.findings import Finding
from imageport.rules.base import CheckOptions, ImageFacts
from imageport.rules.catalogue import RULES
from imageport.rules.engine import run_rules
from imageport.service.tools.check import inspect_source
from imageport.source import FileSource
from support import guest_fixtures as gf
from support import guest_images
from support import network_fixtures as nf
from support.configure_trees import applied
from support.kernel_fixtures import open_guest
from support.rhel_network import IFCFG_ETH0, RHEL_NETWORK

NETWORK_RULES = ("IMG-NET-RULES", "IMG-NET-DHCP", "IMG-HW-BINDING")
DEB_RULES = "# generated\n" + (
    'SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="52:54:00:12:34:56", NAME="eth0"\n'
)


def findings(path: Path) -> list[Finding]:
    """Every rule's findings for the disk at ``path``, as the check computes them."""
    with FileSource(path) as src:
        found = inspect_source(src)
        facts = ImageFacts(found.container, found.allocated_bytes, CheckOptions(), found.guest)
        return list(run_rules(RULES, facts))


def of(found: Iterable[Finding], rules: Iterable[str]) -> list[str]:
    wanted = set(rules)
    return [
        f"{f.rule_id}: {f.message} {' '.join(f.evidence)}" for f in found if f.rule_id in wanted
    ]


def plan_of(path: Path) -> Plan:
    with open_guest(path) as guest:
        return plan_configuration(guest, only=set(NETWORK_RULES))


def contents(path: Path, rels: Iterable[str]) -> dict[str, bytes | None]:
    """What the guest at ``path`` holds at each of ``rels`` (None when absent)."""
    found: dict[str, bytes | None] = {}
    with open_guest(path) as guest:
        for rel in rels:
            try:
                found[rel] = guest.files.read_file("/" + rel)
            except ImageportError:
                found[rel] = None
    return found


def prove(name: str, root: gf.Tree, expect: Iterable[str]) -> Plan:
    """Before, plan, after (see the module); ``expect`` are texts the rules' findings hold
    before. Returns the plan for the case's own assertions."""
    before_disk = gf.build_guest(name, root=root)
    before = findings(before_disk)
    reported = " | ".join(of(before, NETWORK_RULES))
    for text in expect:
        assert text in reported
    plan = plan_of(before_disk)
    assert plan.changes and all(c.why for c in plan.changes)
    new_root, _ = applied(plan.operations, root)
    after_disk = gf.build_guest(name + "-fixed", root=new_root)
    after = findings(after_disk)
    assert of(after, NETWORK_RULES) == [], plan.notes
    others = [r.id for r in RULES if r.id not in NETWORK_RULES]
    assert of(after, others) == of(before, others)
    planned = {op.path[1:] for op in plan.operations}
    untouched = [rel for rel in root if rel not in planned and not rel.endswith(".keep")]
    assert contents(after_disk, untouched) == contents(before_disk, untouched)
    for op in plan.operations:  # and the planned paths hold what the plan says
        got = contents(after_disk, [op.path[1:]])[op.path[1:]]
        assert got == (op.data if op.kind is OpKind.WRITE else None)
    return plan


def change(plan: Plan, path: str) -> tuple[ChangeKind, str, str]:
    """``(kind, why, diff)`` of the one change of ``path``."""
    (c,) = [c for c in plan.changes if c.path == path]
    return c.kind, c.why, "\n".join(c.diff)


# -- the real Debian image with the seeded defects ----------------------------------------------


def test_debian_defects_image() -> None:
    image = guest_images.guest_image("gpt-bios-esp-ext4-defects")
    reported = " | ".join(of(findings(image), NETWORK_RULES))
    assert "70-persistent-net.rules" in reported
    assert "Interface eth0 has a static address" in reported
    assert "hwaddress ether 52:54:00:12:34:56" in reported
    plan = plan_of(image)
    kind, why, _ = change(plan, "/etc/udev/rules.d/70-persistent-net.rules")
    assert kind is ChangeKind.REMOVED and 'ATTR{address}=="52:54:00:12:34:56"' in why
    assert plan.changes[0].rule == "IMG-NET-RULES"
    kind, why, diff = change(plan, "/etc/network/interfaces")
    assert kind is ChangeKind.EDITED
    assert "`iface eth0 inet static` became `iface eth0 inet dhcp`" in why
    assert "-iface eth0 inet static\n" in diff and "+iface eth0 inet dhcp" in diff
    assert "+    # imageport: address 192.168.10.23/24" in diff
    assert "+    # imageport: hwaddress ether 52:54:00:12:34:56" in diff
    # Debian 12 has no generator to mask; the loopback and source lines are kept
    assert {op.path for op in plan.operations} == {
        "/etc/udev/rules.d/70-persistent-net.rules",
        "/etc/network/interfaces",
        "/boot/grub/grub.cfg",
    }
    # udev names the NIC ens3 on a new server unless the kernel is told net.ifnames=0
    kind, why, diff = change(plan, "/boot/grub/grub.cfg")
    assert kind is ChangeKind.EDITED and why.startswith("added net.ifnames=0")
    assert diff.endswith("ro quiet net.ifnames=0")
    assert plan.notes == ()
    (interfaces,) = [op for op in plan.operations if op.path == "/etc/network/interfaces"]
    assert interfaces.data is not None
    assert b"source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n" in (
        interfaces.data
    )


# -- each configuration system on synthetic guests ----------------------------------------------


def test_rhel9_ifcfg_and_persistent_net_rules() -> None:
    plan = prove(
        "fix-net-rhel",
        RHEL_NETWORK,
        [
            "70-persistent-net.rules",
            "ifcfg-eth0:8: IPADDR=192.168.122.10",
            "ifcfg-eth1:5: IPADDR=10.20.0.5",
            "HWADDR=52:54:00:6b:3c:58",
        ],
    )
    kind, why, diff = change(plan, "/etc/sysconfig/network-scripts/ifcfg-eth0")
    assert "`BOOTPROTO=none` became `BOOTPROTO=dhcp`" in why
    assert "commented out `HWADDR=52:54:00:6b:3c:58`" in why
    assert "+# imageport: GATEWAY=192.168.122.1" in diff
    kind, why, _ = change(plan, "/etc/sysconfig/network-scripts/ifcfg-eth1")
    assert kind is ChangeKind.REMOVED and "a NIC of the old machine" in why
    assert "/etc/sysconfig/network-scripts/ifcfg-lo" not in {c.path for c in plan.changes}
    (eth0,) = [o for o in plan.operations if o.path.endswith("ifcfg-eth0")]
    assert eth0.data is not None
    kept = [line for line in IFCFG_ETH0.splitlines() if "=" not in line or "DNS1" in line]
    assert all(line.encode() in eth0.data for line in kept)  # the comment and DNS1 stay


def test_ifupdown_and_netplan() -> None:
    root: gf.Tree = {
        "etc/network/interfaces": nf.DEB_STATIC_INTERFACES,
        "etc/netplan/50-static.yaml": nf.NETPLAN_STATIC,
        "etc/netplan/60-dhcp.yaml": nf.NETPLAN_DHCP,
    }
    plan = prove("fix-net-deb", root, ["address 192.168.10.5/24", "macaddress: 52:54:00:ab"])
    kind, why, _ = change(plan, "/etc/netplan/50-static.yaml")
    assert kind is ChangeKind.REMOVED and "their first NIC is eth0" in why
    assert "/etc/netplan/60-dhcp.yaml" not in {c.path for c in plan.changes}


def test_ifcfg_keyfile_and_networkd() -> None:
    root: gf.Tree = {
        "usr/lib/os-release": nf.CENTOS_RELEASE,
        "etc/sysconfig/network-scripts/ifcfg-eth0": nf.IFCFG_STATIC,
        "etc/sysconfig/network-scripts/ifcfg-lo": nf.IFCFG_LO,
        "etc/sysconfig/network-scripts/ifcfg-eth0.bak": "BOOTPROTO=static\nIPADDR=9.9.9.9\n",
        "etc/NetworkManager/system-connections/office.nmconnection": nf.NM_MANUAL,
        "etc/systemd/network/10-static.network": nf.NETWORKD_STATIC,
    }
    plan = prove("fix-net-centos", root, ["IPADDR=192.168.10.5", "mac-address=52:54:00:AA"])
    paths = {c.path: c.kind for c in plan.changes}
    assert paths == {
        "/etc/sysconfig/network-scripts/ifcfg-eth0": ChangeKind.EDITED,
        "/etc/NetworkManager/system-connections/office.nmconnection": ChangeKind.REMOVED,
        "/etc/systemd/network/10-static.network": ChangeKind.REMOVED,
    }


def test_suse_ifcfg_and_wicked() -> None:
    root: gf.Tree = {
        "usr/lib/os-release": nf.SUSE_RELEASE,
        "etc/sysconfig/network/ifcfg-eth0": nf.SUSE_IFCFG,
        "etc/sysconfig/network/ifcfg-lo": "IPADDR=127.0.0.1/8\nSTARTMODE=nfsroot\n",
        "etc/wicked/ifconfig/eth1.xml": nf.WICKED_XML,
    }
    plan = prove("fix-net-suse", root, ["LLADDR='52:54:00:00:00:01'", "192.168.50.2/24"])
    kind, why, diff = change(plan, "/etc/sysconfig/network/ifcfg-eth0")
    assert kind is ChangeKind.EDITED and plan.changes[0].rule == "IMG-HW-BINDING"
    assert "no longer bound to the old MAC" in why
    assert diff == "-LLADDR='52:54:00:00:00:01'\n+# imageport: LLADDR='52:54:00:00:00:01'"
    assert change(plan, "/etc/wicked/ifconfig/eth1.xml")[0] is ChangeKind.REMOVED


@pytest.mark.parametrize(
    ("name", "path", "text", "expect", "after"),
    [
        (
            "fix-net-nm",
            "etc/NetworkManager/system-connections/office.nmconnection",
            nf.NM_MANUAL,
            "address1=10.1.2.3/16",
            ["method=auto", "# imageport: mac-address=52:54:00:AA:BB:CC", "[ipv6]\nmethod=ignore"],
        ),
        (
            "fix-net-networkd",
            "etc/systemd/network/10-static.network",
            nf.NETWORKD_STATIC,
            "Address=172.16.0.9/12",
            ["[Match]\nName=en* eth*\n# imageport: MACAddress", "DHCP=yes\n"],
        ),
        (
            "fix-net-netplan",
            "etc/netplan/50-static.yaml",
            nf.NETPLAN_STATIC,
            "addresses: ['10.0.0.7/24']",
            ["    ens3:\n      dhcp4: true\n      # imageport: match:", "# imageport: routes:"],
        ),
        (
            "fix-net-wicked",
            "etc/wicked/ifconfig/eth1.xml",
            nf.WICKED_XML,
            "<local>192.168.50.2/24</local>",
            [
                "<ipv4:dhcp><enabled>true</enabled></ipv4:dhcp>",
                "  <name>eth1</name>\n  <ipv4:dhcp>",
            ],
        ),
    ],
)
def test_the_only_interface_is_put_on_dhcp_in_place(
    name: str, path: str, text: str, expect: str, after: list[str]
) -> None:
    """An interface that is the guest's only one is its primary: edited, never removed."""
    plan = prove(name, {path: text}, [expect])
    (op,) = plan.operations
    assert op.kind is OpKind.WRITE and op.data is not None
    for part in after:
        assert part in op.data.decode()


def test_generator_is_masked_where_the_distribution_has_one() -> None:
    root: gf.Tree = {
        "etc/udev/rules.d/70-persistent-net.rules": DEB_RULES,
        "lib/udev/rules.d/75-persistent-net-generator.rules": "# the generator\nACTION=add\n",
        "etc/network/interfaces": nf.DEB_GOOD_INTERFACES + "\nauto eth0\niface eth0 inet dhcp\n",
    }
    plan = prove("fix-net-generator", root, ["70-persistent-net.rules"])
    kind, why, diff = change(plan, "/etc/udev/rules.d/75-persistent-net-generator.rules")
    assert kind is ChangeKind.MASKED and "/dev/null" in why and diff == "+-> /dev/null"
    # already disabled the CentOS 6 way (an empty file): left alone
    quiet = {**root, "etc/udev/rules.d/75-persistent-net-generator.rules": ""}
    plan = prove("fix-net-generator-off", quiet, ["70-persistent-net.rules"])
    assert [c.path for c in plan.changes] == ["/etc/udev/rules.d/70-persistent-net.rules"]


def test_first_nic_is_configured_when_nothing_would_configure_one() -> None:
    root: gf.Tree = {"etc/network/interfaces": "# loopback only\nauto lo\niface lo inet loopback\n"}
    plan = prove("fix-net-none", root, ["No network interface is configured"])
    kind, why, diff = change(plan, "/etc/network/interfaces")
    assert kind is ChangeKind.EDITED
    assert "nothing else brings the network up" in why
    assert diff == "+\n+# the first NIC on DHCP\n+allow-hotplug eth0\n+iface eth0 inet dhcp"


def test_nothing_to_fix_plans_nothing() -> None:
    assert plan_of(nf.debian_good()).operations == ()


# -- hostile guests -----------------------------------------------------------------------------


def test_a_weird_file_name_is_refused_and_noted() -> None:
    name = "etc/sysconfig/network-scripts/ifcfg-eth\x01"
    disk = gf.build_guest(
        "fix-net-weird",
        root={"usr/lib/os-release": nf.CENTOS_RELEASE, name: nf.IFCFG_STATIC},
    )
    assert of(findings(disk), ["IMG-NET-DHCP"])  # the rule reads it
    plan = plan_of(disk)
    assert plan.operations == ()
    assert any("control characters" in n.text for n in plan.notes)


def test_a_huge_file_is_not_read_for_editing() -> None:
    padding = ("#" * 99 + "\n") * (MAX_EDIT_BYTES // 100 + 10)
    disk = gf.build_guest(
        "fix-net-huge",
        root={
            "usr/lib/os-release": nf.CENTOS_RELEASE,
            "etc/sysconfig/network-scripts/ifcfg-eth0": nf.IFCFG_STATIC + padding,
        },
    )
    plan = plan_of(disk)
    assert plan.operations == ()
    with open_guest(disk) as guest, pytest.raises(ImageportError):
        Edits(guest.files).read("/etc/sysconfig/network-scripts/ifcfg-eth0")


def test_a_form_that_is_not_edited_line_by_line_is_noted() -> None:
    flow = "network:\n  ethernets:\n    eth0: {addresses: [10.0.0.7/24]}\n"
    plan = plan_of(gf.build_guest("fix-net-flow", root={"etc/netplan/01-flow.yaml": flow}))
    assert plan.operations == ()
    (note,) = plan.notes
    assert note.rule == "IMG-NET-DHCP" and "/etc/netplan/01-flow.yaml: not changed" in note.text


def test_disk_names_by_hardware_are_noted_not_changed() -> None:
    by_id = "/dev/disk/by-id/ata-VBOX_HARDDISK_VB3f2a1c9e-4d1f0b27-part3"
    fstab = gf.GOOD_FSTAB.replace(f"UUID={gf.ROOT_UUID} /", f"{by_id} /")
    disk = gf.build_guest("fix-net-diskid", root=gf.CLOUD_READY, fstab=fstab)
    assert of(findings(disk), ["IMG-HW-BINDING"])
    plan = plan_of(disk)
    assert plan.operations == ()
    (note,) = plan.notes
    assert note.rule == "IMG-HW-BINDING" and f"/etc/fstab:2: {by_id} /" in note.text
    assert "cannot be proven offline" in note.text
