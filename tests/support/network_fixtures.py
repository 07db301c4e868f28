"""Guest disks with network and cloud-init configuration, for the readers and the rules.

Each is a :func:`guest_fixtures.build_guest` disk (built once, cached) whose root holds the
files of one scenario. The contents are kept here as constants so tests can quote lines.
"""

from __future__ import annotations

from pathlib import Path

from support import guest_fixtures as gf
from support.guest_fixtures import Symlink

CENTOS_RELEASE = (
    'NAME="CentOS Stream"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="9"\n'
    'PRETTY_NAME="CentOS Stream 9"\n'
)
SUSE_RELEASE = (
    'NAME="SLES"\nID="sles"\nID_LIKE="suse"\nVERSION_ID="15.5"\n'
    'PRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"\n'
)

DPKG_STATUS = """Package: adduser
Status: install ok installed
Version: 3.134

Package: cloud-init
Status: install ok installed
Priority: optional
Version: 22.4.2-1
Description: initialization and customization tool for cloud instances
 Cloud-init is the industry standard.

Package: zlib1g
Status: install ok installed
Version: 1:1.2.13.dfsg-1
"""
STAGES = ("cloud-init-local", "cloud-init", "cloud-config", "cloud-final")
VENDOR_CFG = """# written by the image maker
datasource_list: [ OpenStack ]
datasource:
  OpenStack:
    metadata_urls: ['http://169.254.169.254']
network: {config: disabled}
manage_etc_hosts: localhost
"""
DPKG_CFG = (
    "# to update this file, run dpkg-reconfigure cloud-init\ndatasource_list: [ NoCloud, None ]\n"
)


Files = dict[str, str | bytes | Symlink | None]


def _wants(target: str, stages: tuple[str, ...] = STAGES) -> Files:
    return {
        f"etc/systemd/system/{target}.wants/{s}.service": Symlink(
            f"/lib/systemd/system/{s}.service"
        )
        for s in stages
    }


def cloud_init_deb(cfg_d: dict[str, str]) -> Files:
    """cloud-init installed as a Debian package, all stages enabled, with ``cfg_d`` files."""
    return {
        "usr/bin/cloud-init": "#!/usr/bin/python3\n",
        "usr/lib/python3/dist-packages/cloudinit/__init__.py": "",
        "usr/lib/python3/dist-packages/cloudinit/version.py": (
            '__VERSION__ = "22.4.2"\n_PACKAGED_VERSION = "@@PACKAGED_VERSION@@"\n'
        ),
        "usr/lib/python3/dist-packages/cloudinit/sources/DataSourceOpenStack.py": "",
        "var/lib/dpkg/status": DPKG_STATUS,
        "etc/cloud/cloud.cfg": "users:\n  - default\ndisable_root: true\nssh_pwauth: false\n",
        **{f"etc/cloud/cloud.cfg.d/{k}": v for k, v in cfg_d.items()},
        **_wants("cloud-init.target"),
    }


# -- Debian, all good: DHCP through an included file, cloud-init with OpenStack --------------
DEB_GOOD_INTERFACES = """# interfaces(5) file used by ifup(8) and ifdown(8)
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback
"""
DEB_GOOD_ETH0 = "allow-hotplug eth0\niface eth0 inet dhcp\n"

# -- Debian, bad: static address with hwaddress, netplan static bound to a MAC ---------------
DEB_STATIC_INTERFACES = """auto lo
iface lo inet loopback

auto eth0
iface eth0 inet static
    address 192.168.10.5/24
    gateway 192.168.10.1
    hwaddress ether 52:54:00:12:34:56
"""
NETPLAN_STATIC = """network:
  version: 2
  ethernets:
    ens3:
      match:
        macaddress: "52:54:00:ab:cd:ef"
      set-name: ens3
      addresses: [10.0.0.7/24]
      routes:
        - to: default
          via: 10.0.0.1
"""
NETPLAN_DHCP = "network:\n  version: 2\n  ethernets:\n    eth1:\n      dhcp4: true\n"

# -- CentOS: ifcfg static with HWADDR, NM keyfile manual with MAC, networkd static ------------
IFCFG_STATIC = """DEVICE=eth0
TYPE=Ethernet
ONBOOT=yes
BOOTPROTO=static
IPADDR=192.168.10.5
PREFIX=24
HWADDR=52:54:00:12:34:56
"""
IFCFG_LO = "DEVICE=lo\nIPADDR=127.0.0.1\nNETMASK=255.0.0.0\nONBOOT=yes\n"
NM_MANUAL = """[connection]
id=office
uuid=7b0fbb8d-2d3c-4f5e-8a4f-0c6c1d2e3f40
type=ethernet
interface-name=eth1

[ethernet]
mac-address=52:54:00:AA:BB:CC

[ipv4]
method=manual
address1=10.1.2.3/16,10.1.0.1

[ipv6]
method=ignore
"""
NETWORKD_STATIC = """[Match]
MACAddress=52:54:00:de:ad:01

[Network]
Address=172.16.0.9/12
Gateway=172.16.0.1
"""

# -- SLES: cloud-init switched off, SUSE ifcfg DHCP with LLADDR, wicked static ---------------
SUSE_IFCFG = "BOOTPROTO='dhcp'\nSTARTMODE='auto'\nLLADDR='52:54:00:00:00:01'\n"
WICKED_XML = """<interface>
  <name>eth1</name>
  <ipv4:static>
    <address>
      <local>192.168.50.2/24</local>
    </address>
  </ipv4:static>
</interface>
"""
CYCLIC_CFG = "base: &b [1, *b]\n"


def debian_good() -> Path:
    return gf.build_guest(
        "net-deb-good",
        root={
            "etc/network/interfaces": DEB_GOOD_INTERFACES,
            "etc/network/interfaces.d/eth0": DEB_GOOD_ETH0,
            "etc/network/interfaces.d/eth0~": "iface eth0 inet static\n address 1.2.3.4\n",
            **cloud_init_deb({"99_openstack.cfg": VENDOR_CFG}),
        },
    )


def debian_static() -> Path:
    return gf.build_guest(
        "net-deb-static",
        root={
            "etc/network/interfaces": DEB_STATIC_INTERFACES,
            "etc/netplan/50-static.yaml": NETPLAN_STATIC,
            "etc/netplan/60-dhcp.yaml": NETPLAN_DHCP,
            **cloud_init_deb({"90_dpkg.cfg": DPKG_CFG, "05_logging.cfg": "output: {}\n"}),
        },
    )


def centos_static() -> Path:
    return gf.build_guest(
        "net-centos-static",
        root={
            "usr/lib/os-release": CENTOS_RELEASE,
            "etc/sysconfig/network-scripts/ifcfg-eth0": IFCFG_STATIC,
            "etc/sysconfig/network-scripts/ifcfg-lo": IFCFG_LO,
            "etc/sysconfig/network-scripts/ifcfg-eth0.bak": "BOOTPROTO=static\nIPADDR=9.9.9.9\n",
            "etc/NetworkManager/system-connections/office.nmconnection": NM_MANUAL,
            "etc/systemd/network/10-static.network": NETWORKD_STATIC,
        },
    )


def rpm_cloud_init_default() -> Path:
    """cloud-init from an RPM (no dpkg), default datasource list, no network files."""
    return gf.build_guest(
        "net-rpm-ci",
        root={
            "usr/lib/os-release": CENTOS_RELEASE,
            "usr/bin/cloud-init": "#!/usr/bin/python3\n",
            "usr/lib/python3.9/site-packages/cloudinit/__init__.py": "",
            "usr/lib/python3.9/site-packages/cloudinit/version.py": '__VERSION__ = "23.4"\n',
            "usr/lib/python3.9/site-packages/cloudinit/sources/DataSourceOpenStack.py": "",
            "etc/cloud/cloud.cfg": "users:\n - default\nssh_pwauth: 0\n",
            **_wants("multi-user.target", ("cloud-init-local", "cloud-config", "cloud-final")),
            "etc/systemd/system/multi-user.target.wants/cloud-init-network.service": Symlink(
                "/usr/lib/systemd/system/cloud-init-network.service"
            ),
        },
    )


def cloud_init_off_on_kernel_cmdline() -> Path:
    """cloud-init switched off by ``cloud-init=disabled`` on the kernel command line (and in a
    comment, which does not count)."""
    return gf.build_guest(
        "ci-cmdline",
        root={
            "usr/bin/cloud-init": "",
            "etc/default/grub": "# cloud-init=disabled in a comment\n"
            'GRUB_CMDLINE_LINUX="quiet cloud-init=disabled"\n',
        },
    )


def suse_disabled() -> Path:
    return gf.build_guest(
        "net-suse-off",
        root={
            "usr/lib/os-release": SUSE_RELEASE,
            "etc/sysconfig/network/ifcfg-eth0": SUSE_IFCFG,
            "etc/sysconfig/network/ifcfg-lo": "IPADDR=127.0.0.1/8\nSTARTMODE=nfsroot\n",
            "etc/wicked/ifconfig/eth1.xml": WICKED_XML,
            "usr/bin/cloud-init": "#!/usr/bin/python3\n",
            "etc/cloud/cloud-init.disabled": "",
            "etc/cloud/cloud.cfg": "datasource_list: [ OpenStack ]\n",
            "etc/cloud/cloud.cfg.d/50_cycle.cfg": CYCLIC_CFG,
            **_wants("multi-user.target", ("cloud-init-local", "cloud-final")),
            "etc/systemd/system/cloud-config.service": Symlink("/dev/null"),
            "etc/systemd/system/multi-user.target.wants/cloud-config.service": Symlink(
                "/usr/lib/systemd/system/cloud-config.service"
            ),
        },
    )
