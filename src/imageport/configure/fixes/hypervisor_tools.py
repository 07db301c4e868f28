"""IMG-HYPERVISOR-TOOLS: another hypervisor's guest tools no longer start at boot.

The vendor's automatic configuration removes VMware Tools and other PV tools. Offline, a
package cannot be uninstalled properly (its scripts must run in the guest), so this fix
disables them reversibly instead and says so: each service of the tools the rule reports
that starts at boot is masked (``/etc/systemd/system/<unit>`` linked to ``/dev/null``; undo
by deleting the link), its enablement links in ``/etc/systemd/system/*.wants`` (and
``*.requires``) are removed, and so are its SysV start links (``/etc/rc?.d/S??<name>``). A
unit file an administrator put in ``/etc/systemd/system`` itself is not replaced by a mask:
removing its links disables it. Links a package installed under ``/usr/lib/systemd`` are the
package's and stay; the mask overrides them.

The packages stay installed, so the rule still reports them; the note says how to uninstall
them once a server runs.
"""

from __future__ import annotations

from imageport.configure.edits import Edits
from imageport.guest.facts.hypervisor_tools import FoundTools, read_hypervisor_tools
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.facts.units import SYSV_DIRS
from imageport.guest.files.configfiles import exists, list_dir
from imageport.guest.files.mounts import GuestFiles
from imageport.rules.hypervisor_tools import HypervisorToolsRule, removal_advice

RULE = HypervisorToolsRule.id
SYSTEM_UNITS = "/etc/systemd/system"
#: The programs whose presence shows that the guest runs systemd (then masks apply).
SYSTEMD = ("/usr/lib/systemd/systemd", "/lib/systemd/systemd")


def _wants_dirs(files: GuestFiles) -> list[str]:
    problems: list[str] = []
    return [
        f"{SYSTEM_UNITS}/{name}"
        for name, _ in list_dir(files, SYSTEM_UNITS, problems)
        if name.endswith((".wants", ".requires"))
    ]


def enablement_links(files: GuestFiles, unit: str, wants: list[str]) -> list[str]:
    """The links in /etc that start ``unit`` at boot: systemd's ``.wants``/``.requires``
    links and SysV ``S<NN><name>`` links (``name.service`` being the unit)."""
    problems: list[str] = []
    links = [
        f"{directory}/{unit}"
        for directory in wants
        if any(name == unit for name, _ in list_dir(files, directory, problems))
    ]
    if unit.endswith(".service"):
        script = unit.removesuffix(".service")
        for rc in SYSV_DIRS:
            links.extend(
                f"{rc}/{name}"
                for name, _ in list_dir(files, rc, problems)
                if name[:1] == "S" and name[1:3].isdigit() and name[3:] == script
            )
    return links


def _disable(guest: GuestFacts, edits: Edits, tools: FoundTools, wants: list[str]) -> None:
    files = guest.files
    systemd = any(exists(files, p) for p in SYSTEMD)
    for unit, _ in tools.units:
        for link in enablement_links(files, unit, wants):
            edits.remove(
                link,
                rule=RULE,
                why=f"removed the link that starts {unit} at boot ({tools.kind.name})",
            )
        path = f"{SYSTEM_UNITS}/{unit}"
        if not systemd:
            continue
        if edits.read(path) is not None:
            edits.note(
                RULE,
                f"{path} is a unit file of its own: not masked (its links were removed)",
            )
            continue
        edits.mask(
            path,
            rule=RULE,
            why=f"masked {unit} ({tools.kind.name}) so that nothing starts it; delete the "
            "link to undo",
        )


def plan_hypervisor_tools(guest: GuestFacts, edits: Edits) -> None:
    """Disable the services of other hypervisors' tools; note that the packages stay."""
    found = guest.derive(read_hypervisor_tools).found
    if not found:
        return
    wants = _wants_dirs(guest.files)
    for tools in found:
        _disable(guest, edits, tools, wants)
        started = "their services are disabled" if tools.units else "nothing starts them at boot"
        edits.note(
            RULE,
            f"{tools.kind.name} stay installed ({started}): packages are not removed offline. "
            + removal_advice(tools, guest.family),
        )
