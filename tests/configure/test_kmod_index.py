"""kmod's binary indexes as we write them, judged by the real kmod (``modprobe -d DIR -S VER``
resolving dependencies and aliases from nothing but our files) and compared with what the real
depmod wrote for a Debian kernel's module tree (the defects image's initrd), read back by an
independent decoder (``support/kmod_dump.py``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imageport.configure import kmod_index as k
from imageport.guest.boot.kernels import read_kernels
from support import guest_images as gi
from support import kernel_fixtures as kt
from support.initrd_unpack import unpack_initrd
from support.kmod_dump import dump_index

VER = "9.9.9-test"
DEP = """kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko \
kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko \
kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_ring.ko \
kernel/drivers/virtio/virtio.ko
kernel/drivers/net/xen-netfront.ko:
kernel/drivers/ata/libata.ko:
kernel/drivers/ata/ata_piix.ko: kernel/drivers/ata/libata.ko
"""
ALIASES = """# Aliases extracted from modules themselves.
alias virtio:d00000002v* virtio_blk
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias xen:vif xen_netfront
alias net-pf-1-proto-[0-9] virtio_ring
alias pci:v00008086d00007010sv*sd*bc*sc*i* ata_piix
alias pci:v*d*sv*sd*bc01sc01i* ata_piix
"""
SYMBOLS = (
    "# Aliases for symbols, used by symbol_request().\nalias symbol:virtqueue_add_sgs virtio_ring\n"
)


def _modprobe(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("modprobe") or shutil.which("modprobe", path="/usr/sbin:/sbin")
    if tool is None:
        pytest.fail("modprobe (kmod) is not installed; the index is checked against it")
    return subprocess.run(
        [tool, "-d", str(root), "-S", VER, *args], capture_output=True, text=True, check=False
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A module tree whose indexes are ours alone (no depmod has run)."""
    home = tmp_path / "lib" / "modules" / VER
    lines = k.parse_modules_dep(DEP)
    for line in lines:
        (home / line.path).parent.mkdir(parents=True, exist_ok=True)
        (home / line.path).write_bytes(b"not a real module")
    priority = {line.name: i for i, line in enumerate(lines)}
    (home / "modules.dep").write_text(k.format_modules_dep(lines))
    (home / "modules.dep.bin").write_bytes(k.dep_index(lines))
    (home / "modules.alias.bin").write_bytes(k.alias_index(k.parse_aliases(ALIASES), priority))
    symbols = k.parse_aliases(SYMBOLS, "modules.symbols")
    (home / "modules.symbols.bin").write_bytes(k.alias_index(symbols, priority))
    return tmp_path


def _insmods(out: str) -> list[str]:
    return [line.split("/")[-1].strip() for line in out.splitlines() if line.startswith("insmod")]


def test_modprobe_resolves_dependencies_from_our_dep_index(tree: Path) -> None:
    blk = _modprobe(tree, "--show-depends", "virtio_blk")
    assert blk.returncode == 0, blk.stderr
    assert _insmods(blk.stdout) == ["virtio.ko", "virtio_ring.ko", "virtio_blk.ko"]
    pci = _modprobe(tree, "--show-depends", "virtio-pci")  # '-' and '_' are one to kmod
    assert _insmods(pci.stdout)[-1] == "virtio_pci.ko" and len(_insmods(pci.stdout)) == 5
    piix = _modprobe(tree, "--show-depends", "ata_piix")
    assert _insmods(piix.stdout) == ["libata.ko", "ata_piix.ko"]
    assert _insmods(_modprobe(tree, "--show-depends", "xen_netfront").stdout) == ["xen-netfront.ko"]


def test_modprobe_resolves_device_aliases_by_pattern_from_our_alias_index(tree: Path) -> None:
    """What udev asks for when it sees the devices: a virtio disk, the virtio PCI function,
    the PIIX IDE controller; the wildcard and bracket patterns match as in depmod's index."""
    cases = {
        "virtio:d00000002v00001AF4": ["virtio_blk"],
        "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00": ["virtio_pci"],
        "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80": ["ata_piix"],
        "xen:vif": ["xen_netfront"],
        "net-pf-1-proto-7": ["virtio_ring"],
        "symbol:virtqueue_add_sgs": ["virtio_ring"],
    }
    for alias, modules in cases.items():
        got = _modprobe(tree, "--resolve-alias", alias)
        assert got.returncode == 0, (alias, got.stderr)
        assert sorted(set(got.stdout.split())) == modules, alias
    nothing = _modprobe(tree, "--resolve-alias", "virtio:d00000063v00001AF4")
    assert nothing.returncode != 0 and not nothing.stdout


def test_an_alias_is_stored_with_underscores_outside_brackets() -> None:
    assert k.alias_key("net-pf-1-proto-[0-9]") == "net_pf_1_proto_[0-9]"
    assert k.alias_key("a-b[x-z]c-d") == "a_b[x-z]c_d"
    assert set(dump_index(k.alias_index([("x-y", "m")], {}))) == {"x_y"}


def test_an_empty_index_is_valid_and_finds_nothing(tmp_path: Path) -> None:
    home = tmp_path / "lib" / "modules" / VER
    home.mkdir(parents=True)
    (home / "modules.dep.bin").write_bytes(k.dep_index([]))
    (home / "modules.alias.bin").write_bytes(k.alias_index([], {}))
    got = _modprobe(tmp_path, "--show-depends", "virtio_blk")
    assert got.returncode != 0 and "not found" in got.stderr
    assert dump_index(k.dep_index([])) == {}


def test_keys_sharing_prefixes_and_keys_that_are_prefixes_of_others_round_trip() -> None:
    entries = [("ab", "1", 0), ("abc", "2", 1), ("abd", "3", 2), ("b", "4", 3), ("ab", "5", 0)]
    assert dump_index(k.write_index(entries)) == {
        "ab": [(0, "1"), (0, "5")],
        "abc": [(1, "2")],
        "abd": [(2, "3")],
        "b": [(3, "4")],
    }
    # every key sharing its first characters: the root still has no prefix (as depmod's)
    data = k.write_index([("virtio_blk", "x", 0), ("virtio_net", "y", 1)])
    assert dump_index(data) == {"virtio_blk": [(0, "x")], "virtio_net": [(1, "y")]}
    root = int.from_bytes(data[8:12], "big")
    assert not root & k.NODE_PREFIX and root & k.NODE_CHILDS


@pytest.mark.parametrize(
    "bad_dep",
    [
        "/lib/modules/x/kernel/a.ko:\n",
        "kernel/../../etc/shadow.ko:\n",
        "kernel/a.ko: kernel/../b.ko\n",
        "kernel/a.txt:\n",
        "no colon here\n",
        "kernel/a.ko: " + "kernel/b.ko " * (k.MAX_DEPS + 1) + "\n",
    ],
)
def test_modules_dep_lines_with_unsafe_or_odd_paths_are_refused(bad_dep: str) -> None:
    with pytest.raises(ValueError):
        k.parse_modules_dep(bad_dep)


@pytest.mark.parametrize(
    "bad_alias",
    ["alias only-two", "alias a b c", "alias k mod;rm", "include x y", "alias " + "k" * 600 + " m"],
)
def test_alias_lines_that_are_not_depmods_are_refused(bad_alias: str) -> None:
    with pytest.raises(ValueError):
        k.parse_aliases(bad_alias)


def test_non_ascii_keys_and_multi_line_values_are_refused() -> None:
    with pytest.raises(ValueError):
        k.write_index([("vírtio", "m", 0)])
    with pytest.raises(ValueError):
        k.write_index([("virtio", "m\nalias x y", 0)])
    with pytest.raises(ValueError):
        k.parse_modules_dep("kernel/a.ko:\n" * (k.MAX_LINES + 1))


@pytest.fixture(scope="module")
def depmod_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module directory of the defects image's initrd, unpacked by the real zstd and
    cpio: its text and binary indexes were written by the real depmod (Debian's kmod)."""
    path = gi.guest_raw("gpt-bios-esp-ext4-defects")
    with kt.open_guest(path) as guest:
        kernel = guest.derive(read_kernels).default
        assert kernel is not None and kernel.initrd is not None
        data = guest.files.read_file(kernel.initrd.path, 256 << 20)
    top = tmp_path_factory.mktemp("depmod")
    unpack_initrd(data, top)
    return top / "usr" / "lib" / "modules" / kernel.version


@pytest.mark.parametrize("name", ["dep", "alias", "symbols"])
def test_our_index_holds_what_depmods_holds_for_a_real_kernel(depmod_tree: Path, name: str) -> None:
    """Rebuilt from depmod's text files, each index has the same keys and values as depmod's
    own, and the same size: the same trie, node for node (only the priorities, depmod's
    internal module numbers, differ)."""
    lines = k.parse_modules_dep((depmod_tree / "modules.dep").read_text())
    priority = {line.name: i for i, line in enumerate(lines)}
    if name == "dep":
        ours = k.dep_index(lines)
    else:
        text = (depmod_tree / f"modules.{name}").read_text()
        ours = k.alias_index(k.parse_aliases(text, f"modules.{name}"), priority)
    theirs = (depmod_tree / f"modules.{name}.bin").read_bytes()

    def values(index: bytes) -> dict[str, list[str]]:
        return {key: sorted(v for _, v in vals) for key, vals in dump_index(index).items()}

    assert values(ours) == values(theirs)
    assert len(values(ours)) > 700
    assert len(ours) == len(theirs)
