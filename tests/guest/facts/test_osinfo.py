"""The OS identity: os-release first, then lsb-release, then the distributions' own files."""

from __future__ import annotations

from imageport.disk.raw import RawDisk
from imageport.guest.facts.inspect import inspect_guest
from imageport.source import FileSource
from support import guest_fixtures as gf


def os_of(name: str, files: gf.Tree) -> tuple[str, str, str, str]:
    no_release = {"usr/lib/os-release": None, "etc/os-release": None}
    with FileSource(gf.build_guest(name, root={**no_release, **files})) as src:
        info = inspect_guest(RawDisk(src)).os
    assert info is not None
    return info.id, info.version_id, info.family, info.source


def test_fallbacks_without_os_release() -> None:
    assert os_of(
        "os-lsb",
        {
            "etc/lsb-release": "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=14.04\n"
            'DISTRIB_DESCRIPTION="Ubuntu 14.04.6 LTS"\n'
        },
    ) == ("ubuntu", "14.04", "debian", "/etc/lsb-release")
    assert os_of("os-centos6", {"etc/redhat-release": "CentOS release 6.10 (Final)\n"}) == (
        "rhel",
        "6.10",
        "rhel",
        "/etc/redhat-release",
    )
    assert os_of(
        "os-suse11",
        {"etc/SuSE-release": "SUSE Linux Enterprise Server 11 (x86_64)\nVERSION = 11\n"},
    ) == ("sles", "11", "suse", "/etc/SuSE-release")
    assert os_of("os-euler", {"etc/euleros-release": "EulerOS release 2.0 (SP8)\n"}) == (
        "euleros",
        "2.0",
        "rhel",
        "/etc/euleros-release",
    )
    assert os_of("os-debian7", {"etc/debian_version": "7.11\n"}) == (
        "debian",
        "7.11",
        "debian",
        "/etc/debian_version",
    )
