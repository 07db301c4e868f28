"""Read a boot's console lines as the stages it reached, how it ended, and the lines that say so.

The stages, in the order a good boot passes them (:data:`STAGES`): the firmware handed over to a
disk, the boot loader started, the kernel started (its version line), the root filesystem was
mounted, a login prompt appeared, cloud-init finished. How a boot *ends* (:data:`OUTCOMES`) is
the first decisive event on the console: a login prompt (the boot worked), or one of the
failures that never recover by themselves (no bootable device, a boot loader in rescue mode, a
kernel panic, an emergency shell). A boot stopped before any of them ends ``waiting-for-disk``
when systemd was still waiting for a disk, else ``no-login``.

:func:`classify` is pure; :func:`is_settled` tells the boot loop that watching longer cannot
change the outcome (it keeps going after a login prompt while cloud-init, once started, has not
finished).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from imageport.boot.patterns import Signal, signals_of

Stage = Literal["firmware", "boot-loader", "kernel", "root-filesystem", "login", "cloud-init"]
STAGES: tuple[Stage, ...] = (
    "firmware",
    "boot-loader",
    "kernel",
    "root-filesystem",
    "login",
    "cloud-init",
)
Outcome = Literal[
    "login",
    "no-bootable-device",
    "boot-loader-failed",
    "kernel-panic",
    "emergency-shell",
    "waiting-for-disk",
    "no-login",
]
OUTCOMES: tuple[Outcome, ...] = (
    "login",
    "no-bootable-device",
    "boot-loader-failed",
    "kernel-panic",
    "emergency-shell",
    "waiting-for-disk",
    "no-login",
)
#: Signals that end a boot for good, and the outcome each one means.
_TERMINAL: dict[Signal, Outcome] = {
    "login": "login",
    "no-bootable-device": "no-bootable-device",
    "firmware-shell": "no-bootable-device",
    "boot-loader-failed": "boot-loader-failed",
    "kernel-panic": "kernel-panic",
    "emergency-shell": "emergency-shell",
}
#: Signals whose lines explain a failure (quoted under the outcome).
_WHY: frozenset[Signal] = frozenset(
    {
        "no-bootable-device",
        "boot-failed",
        "firmware-shell",
        "boot-loader-error",
        "boot-loader-failed",
        "kernel-panic",
        "root-problem",
        "emergency-shell",
        "waiting-for-disk",
        "disk-problem",
    }
)
#: Evidence lines kept per stage, and explaining lines kept in all.
MAX_STAGE_LINES = 2
MAX_WHY_LINES = 16

Source = Literal["firmware", "serial"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """One console line that proves something, and which console it came from."""

    source: Source
    line: str


@dataclass(frozen=True, slots=True)
class StageResult:
    stage: Stage
    reached: bool
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the console of one boot showed."""

    outcome: Outcome
    stages: tuple[StageResult, ...]
    #: The lines that say why a boot failed (or what it was waiting for), in console order.
    why: tuple[Evidence, ...]
    #: No line at all came from the guest on the serial console.
    serial_silent: bool
    #: cloud-init printed its start banner (so its end is worth waiting for).
    cloud_init_started: bool

    def reached(self, stage: Stage) -> bool:
        return any(s.reached for s in self.stages if s.stage == stage)

    @property
    def last_stage(self) -> Stage | None:
        """The furthest stage reached, or None."""
        done = [s.stage for s in self.stages if s.reached]
        return done[-1] if done else None


def _stage_of(signal: Signal) -> Stage | None:
    return next((stage for stage in STAGES if stage == signal), None)


def classify(serial: Sequence[str], firmware: Sequence[str] = ()) -> Verdict:
    """The verdict of one boot from its clean console lines (:func:`~imageport.boot.console.
    clean_lines`): ``firmware`` is the firmware's own debug log (SeaBIOS writes there, not to
    the serial port), ``serial`` the guest's first serial port (OVMF, GRUB, Linux, systemd)."""
    stage_lines: dict[Stage, list[Evidence]] = {s: [] for s in STAGES}
    why: list[tuple[Signal, Evidence]] = []
    outcome: Outcome | None = None
    waiting = cloud_started = False
    marked = [Evidence("firmware", text) for text in firmware]
    marked += [Evidence("serial", text) for text in serial]
    for ev, signal in ((m, sig) for m in marked for sig in signals_of(m.line)):
        if signal == "boot-loader-error" and stage_lines["kernel"]:
            continue  # "error: " after the kernel started is not GRUB's
        if signal == "cloud-init-started":
            cloud_started = True
        elif signal == "waiting-for-disk":
            waiting = True
        elif signal in ("firmware", "boot-loader", "kernel", "root-filesystem"):
            waiting = waiting and signal != "root-filesystem"
        stage = _stage_of(signal)
        if stage is not None and len(stage_lines[stage]) < MAX_STAGE_LINES:
            stage_lines[stage].append(ev)
        if signal in _WHY and outcome in (None, "login") and len(why) < MAX_WHY_LINES:
            if not any(_same_message(ev.line, w.line) for _, w in why):
                why.append((signal, ev))
        if outcome is None and signal in _TERMINAL:
            outcome = _TERMINAL[signal]
    if outcome is None:
        outcome = "waiting-for-disk" if waiting else "no-login"
    if outcome == "login":  # what the boot waited for on its way, if anything
        why = [(s, w) for s, w in why if s in ("waiting-for-disk", "disk-problem")]
    return Verdict(
        outcome=outcome,
        stages=_stages(stage_lines),
        why=tuple(w for _, w in why),
        serial_silent=not serial,
        cloud_init_started=cloud_started,
    )


def _stages(found: dict[Stage, list[Evidence]]) -> tuple[StageResult, ...]:
    """Every stage, reached when it or a later one was seen (a GRUB that writes only to the
    screen still started when the kernel did)."""
    out: list[StageResult] = []
    later = False
    for stage in reversed(STAGES):
        seen = bool(found[stage])
        # cloud-init finishing does not prove a login prompt (and the reverse)
        reached = seen or (later and stage not in ("login", "cloud-init"))
        later = later or (seen and stage != "cloud-init")
        out.append(StageResult(stage, reached, tuple(found[stage])))
    return tuple(reversed(out))


def _same_message(a: str, b: str) -> bool:
    """Whether two lines are the same message repeated: systemd redraws ``A start job is
    running for X (5s / 1min 30s)`` (or ``Job X/start running (5s / no limit)``) every second
    with a new time and spinner."""
    return _strip_progress(a) == _strip_progress(b)


def _strip_progress(line: str) -> str:
    waiting = "A start job is running" in line or " running (" in line
    head = line.split(" (", 1)[0] if waiting else line
    return head.lstrip(" [*]")


def is_settled(verdict: Verdict) -> bool:
    """True when watching the boot longer cannot change its outcome: a failure that does not
    recover, or a login prompt after which cloud-init (when it started) has finished."""
    if verdict.outcome == "login":
        return not verdict.cloud_init_started or verdict.reached("cloud-init")
    return verdict.outcome not in ("waiting-for-disk", "no-login")


def systemd_unescape(text: str) -> str:
    """``dev-disk-by\\x2duuid-1234\\x2d...`` as systemd shows device units, with the escapes
    decoded (``\\x2d`` is ``-``), for quoting."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("\\x", i) and len(text) >= i + 4:
            try:
                out.append(chr(int(text[i + 2 : i + 4], 16)))
                i += 4
                continue
            except ValueError:
                pass
        out.append(text[i])
        i += 1
    return "".join(out)
