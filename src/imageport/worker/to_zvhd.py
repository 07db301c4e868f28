"""Worker entry point: write an image as ZVHD or ZVHD2 with imageport's own reader and writer.

``python -m imageport.worker.to_zvhd SOURCE SOURCE_FORMAT TARGET TARGET_FORMAT``

Used by the export job (:mod:`imageport.service.jobs.export_job`) for the formats qemu-img cannot
write. The source's format is pinned: the probe must find ``SOURCE_FORMAT`` or nothing is
written. Runs only under :mod:`imageport.worker.launcher`. Prints ``progress DONE TOTAL``
lines on stdout (at most about ten a second), as :mod:`imageport.worker.to_raw` does. Exit
status: 0 done; 1 the file cannot be read or converted (reason on stderr); 2 usage; 3 memory
ran out.
"""

from __future__ import annotations

import sys

from imageport.worker.protocol import progress_printer, run_main

#: Compression threads: a worker is one job's share of the machine.
WRITER_THREADS = 2


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[3] not in ("zvhd", "zvhd2"):
        sys.stderr.write(
            "usage: python -m imageport.worker.to_zvhd SOURCE SOURCE_FORMAT TARGET zvhd|zvhd2\n"
        )
        return 2
    source, source_format, target, target_format = argv
    from imageport.errors import ImageportError
    from imageport.formats import registry
    from imageport.service.tools.convert import ConvertOptions, convert_image
    from imageport.source import FileSource

    progress = progress_printer()

    try:
        with FileSource(source) as opened:
            found = registry.probe(opened).format
        if found != source_format:
            sys.stderr.write(f"the file is {found}, not {source_format}\n")
            return 1
        convert_image(
            source,
            target,
            "zvhd2" if target_format == "zvhd2" else "zvhd",
            ConvertOptions(workers=WRITER_THREADS),
            progress,
        )
    except ImageportError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
