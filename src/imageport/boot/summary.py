"""One sentence per boot saying what happened, for people (the text output and the JSON's
``summary``), from the verdict and how the boot was stopped."""

from __future__ import annotations

from imageport.boot.verdict import Verdict, systemd_unescape

_STAGE_WORDS = {
    "firmware": "the firmware handed over to the disk",
    "boot-loader": "the boot loader started",
    "kernel": "the kernel started",
    "root-filesystem": "the root filesystem was mounted",
    "login": "a login prompt appeared",
    "cloud-init": "cloud-init finished",
}


def describe(
    verdict: Verdict,
    *,
    ended: str,
    seconds: float,
    timeout: float,
    qemu_message: str = "",
    console_hint: str | None = None,
) -> str:
    """What the boot showed, in one or two sentences. ``ended`` is how the boot was stopped
    (:class:`~imageport.service.ports.BootRun`); ``console_hint`` says why the serial console
    may be silent (the image's kernel command line lacks ``console=ttyS0``), when known."""
    text = _outcome(verdict, ended, seconds, timeout, qemu_message)
    silent = verdict.serial_silent or (
        verdict.outcome in ("no-login", "waiting-for-disk") and not verdict.reached("kernel")
    )
    if silent and verdict.outcome not in ("no-bootable-device", "login"):
        where = "after the boot loader" if verdict.reached("boot-loader") else "throughout"
        text += f" The serial console stayed silent {where}"
        text += f" ({console_hint})" if console_hint else ""
        text += "; the screenshot shows the screen."
    return text


def _outcome(
    verdict: Verdict, ended: str, seconds: float, timeout: float, qemu_message: str
) -> str:
    outcome = verdict.outcome
    if outcome == "login":
        text = f"Reached a login prompt after {seconds:.0f} s"
        if verdict.reached("cloud-init"):
            text += "; cloud-init finished"
        elif verdict.cloud_init_started:
            text += "; cloud-init started but had not finished"
        return text + "."
    if outcome == "no-bootable-device":
        return "The firmware found no bootable device."
    if outcome == "boot-loader-failed":
        return "The boot loader started but failed (rescue mode, or no kernel to boot)."
    if outcome == "kernel-panic":
        panic = _first(verdict, "Kernel panic - not syncing")
        return f"The kernel panicked: {panic}." if panic else "The kernel panicked."
    if outcome == "emergency-shell":
        if verdict.reached("root-filesystem"):
            return "The root filesystem was mounted, then systemd entered emergency mode."
        return "The root filesystem was not mounted: the boot dropped to an emergency shell."
    if outcome == "waiting-for-disk":
        device = _waited_for(verdict)
        return (
            f"Still waiting for a disk when the boot was stopped after {seconds:.0f} s"
            f"{': ' + device if device else ''}."
        )
    last = verdict.last_stage
    progress = f"the furthest stage: {_STAGE_WORDS[last]}" if last else "no stage was reached"
    if ended == "qemu-exited":
        return f"QEMU exited ({qemu_message or 'no message'}); {progress}."
    if ended == "guest-stopped":
        return f"The guest powered off or rebooted before a login prompt; {progress}."
    return f"No login prompt within {timeout:.0f} s; {progress}."


def _first(verdict: Verdict, needle: str) -> str | None:
    for ev in verdict.why:
        if needle in ev.line:
            return ev.line[ev.line.index(needle) :].rstrip(" ]-")
    return None


def _waited_for(verdict: Verdict) -> str | None:
    """The device systemd was waiting for, as its status lines name it: a description
    (``/dev/disk/by-uuid/...``), or a device unit's name, shown as the device's path when it
    is whole (``dev-disk-by\x2dlabel-data.device`` is ``/dev/disk/by-label/data``). systemd
    cuts a status line to the console's width with ``…`` as its timer grows: the last line
    that names the device whole is preferred."""
    named = []
    for ev in verdict.why:
        for marker in ("A start job is running for ", "Job "):
            if marker in ev.line and " (" in ev.line:
                rest = ev.line.split(marker, 1)[1].rsplit(" (", 1)[0]
                named.append(_device_path(rest.removesuffix(" running").removesuffix("/start")))
                break
    whole = [name for name in named if "…" not in name]
    found = whole or named
    return found[-1] if found else None


def _device_path(name: str) -> str:
    """``name`` as a path when it is a whole device unit name, else unescaped as it is."""
    if name.startswith("dev-") and name.endswith(".device") and "…" not in name:
        parts = name.removesuffix(".device").split("-")
        return "/" + "/".join(systemd_unescape(part) for part in parts)
    return systemd_unescape(name)
