"""Worker entry point: plan automatic configuration of a raw disk and print the plan.

``python -m imageport.worker.plan_config RAW FOLDER --when TIMESTAMP``

``RAW`` is the job's raw copy of a checked image's disk; it is read as raw (never probed: a
guest's disk may itself begin like a container header) with imageport's own readers, and the
fixes of :mod:`imageport.configure` plan their edits from the guest they find, with the guest
log's record stamped ``TIMESTAMP``. The document (:mod:`imageport.worker.plan_document`) goes
to stdout, the bytes of each file the plan writes into ``FOLDER`` (an empty directory the job
made). Runs only under :mod:`imageport.worker.launcher`: this parses untrusted guest
filesystems.

Exit status: 0 with the document on stdout; 1 the disk holds no system to configure or cannot
be read (the reason on stderr); 2 bad arguments; 3 memory ran out.
"""

from __future__ import annotations

import json
import sys

from imageport.worker.protocol import run_main


def main(argv: list[str]) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="imageport.worker.plan_config")
    parser.add_argument("raw")
    parser.add_argument("folder")
    parser.add_argument("--when", required=True)
    args = parser.parse_args(argv)

    from imageport.configure.plan import plan_configuration
    from imageport.disk.raw import RawDisk
    from imageport.errors import ImageportError
    from imageport.guest.facts.inspect import inspect_guest
    from imageport.source import FileSource
    from imageport.worker.plan_document import plan_to_document

    try:
        with FileSource(args.raw) as source:
            guest = inspect_guest(RawDisk(source))
            if guest.layout.root is None:
                sys.stderr.write("the disk holds no installed system to configure\n")
                return 1
            plan = plan_configuration(guest, when=args.when)
        doc = plan_to_document(plan, Path(args.folder))
    except (ImageportError, ValueError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(json.dumps(doc, separators=(",", ":")))
    sys.stdout.flush()
    return 0


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
