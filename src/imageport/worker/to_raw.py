"""Worker entry point: write an image's virtual disk as a raw file with imageport's own readers.

``python -m imageport.worker.to_raw SOURCE TARGET``

Used for the formats qemu-img cannot read (zvhd, zvhd2). Runs only under
:mod:`imageport.worker.launcher`. Prints ``progress DONE TOTAL`` lines on stdout (at most
about ten a second). Exit status: 0 done; 1 the file cannot be read or converted (reason on
stderr); 3 memory ran out.
"""

from __future__ import annotations

import sys

from imageport.worker.protocol import progress_printer, run_main


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m imageport.worker.to_raw SOURCE TARGET\n")
        return 2
    from imageport.errors import ImageportError
    from imageport.service.tools.to_raw import convert_to_raw

    progress = progress_printer()

    try:
        convert_to_raw(argv[0], argv[1], progress)
    except ImageportError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0


def run() -> None:
    run_main(main)


if __name__ == "__main__":
    run()
