"""IMG-NET-RULES: remove the udev rules that pin interface names to the old machine's MACs.

The files are the ones the rule reports (:func:`imageport.guest.boot.kernels.read_net_rules`):
each is removed. Where the distribution ships the generator that writes them again on the
next boot (``75-persistent-net-generator.rules`` in ``/lib/udev/rules.d``: Debian before 9,
Ubuntu before 17.04, RHEL/CentOS 6, SLES 11), a link from ``/etc/udev/rules.d`` of the same
name to ``/dev/null`` switches it off: udev reads ``/etc/udev/rules.d`` first and a rules
file there hides the packaged one of the same name, and the link is the documented way to
mask one (udev(7)). Copies inside an initrd cannot be removed by editing files; they are
noted for the initrd rebuild.
"""

from __future__ import annotations

from imageport.configure.edits import Edits
from imageport.errors import ImageportError
from imageport.guest.boot.kernels import read_net_rules
from imageport.guest.facts.inspect import GuestFacts

RULE = "IMG-NET-RULES"
GENERATOR = "75-persistent-net-generator.rules"
#: Where distributions install the generator.
GENERATOR_DIRS = ("/lib/udev/rules.d", "/usr/lib/udev/rules.d")
LOCAL_RULES = "/etc/udev/rules.d"


def _generator_active(guest: GuestFacts, edits: Edits) -> bool:
    """Whether the packaged generator exists and nothing in /etc hides it already (an empty
    or comment-only file, CentOS 6's way, or a link to /dev/null)."""
    if not any(edits.read(f"{d}/{GENERATOR}") is not None for d in GENERATOR_DIRS):
        return False
    local = f"{LOCAL_RULES}/{GENERATOR}"
    if edits.is_link(local):
        try:
            fs, ino, _ = guest.files.locate(local, follow=False)
            return fs.readlink_ino(ino) != "/dev/null"
        except ImageportError:
            return True
    text = edits.read_text(local)
    if text is None:
        return True
    return any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines())


def plan_net_rules(guest: GuestFacts, edits: Edits) -> None:
    """Remove each persistent-net rules file the rule reports; mask the generator."""
    removed = 0
    for item in guest.derive(read_net_rules):
        if item.in_initrd:
            edits.note(
                RULE,
                f"{item.path} is inside the initrd {item.in_initrd}; it goes away when the "
                "initrd is rebuilt without /etc/udev/rules.d's copy (not done by editing "
                "files).",
            )
            continue
        edits.remove(
            item.path,
            rule=RULE,
            why=f"removed {item.path}, which named a network interface after the old "
            f"machine's MAC address (line {item.line_no}: {item.line}); a new server's NIC "
            "keeps the name the kernel gives it",
        )
        removed += 1
    if removed and _generator_active(guest, edits):
        edits.mask(
            f"{LOCAL_RULES}/{GENERATOR}",
            rule=RULE,
            why=f"masked udev's {GENERATOR} with a link to /dev/null, so the rules are not "
            "written again for this server's MAC on its first boot",
        )
