"""``imageport remote``: placeholder, filled in by issue 4."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to ``sub``; each sets ``func`` (args -> exit status)."""
