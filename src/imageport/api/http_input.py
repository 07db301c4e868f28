"""How the input of one HTTP connection reaches the parser: in slices, under flow control.

:class:`~imageport.api.http_protocol.LimitedHttpToolsProtocol` hands llhttp its input in
slices, so that the parser never holds more of a request head than the caps allow and no slice
runs past the blank line (``\\r\\n\\r\\n``) that ends a head or a chunked body: a head pipelined
behind another, or behind a chunked body, then starts a slice of its own, is counted on its own
and waits. A :class:`Slicer` keeps the little state that takes: the last bytes fed (a blank
line may be split across reads) and, in a chunked body, what is left of the current chunk, a
size line begun in an earlier read, and whether the last chunk began.

:class:`WatchedFlow` is uvicorn's flow control, which the protocol uses to hold a pipelined
request back (reading stays paused until the response before it is complete) and to restart
the body clock when the application asks for body bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from uvicorn.protocols.http.flow_control import FlowControl

from imageport.limits import KiB

CHUNKED_SLICE = 64 * KiB
"""Largest piece of a chunked body handed to the parser at once: how far past the header cap
a chunk-size line or the trailers of a chunked body can get before they are counted."""
_TERMINATOR = b"\r\n\r\n"  # llhttp 9 insists on CRLF: a head ends at the first blank line


class Slicer:
    """The slicing state of one connection."""

    def __init__(self) -> None:
        self.tail = b""  # last bytes fed of a head or a chunked body
        self._chunk_left = 0  # of a chunked body: data + CRLF of a chunk
        self._size_line = b""  # a chunk-size line begun in an earlier read
        self._last_chunk = False  # the size-0 chunk began: trailers follow

    def head_begins(self) -> None:
        """A request ended: the next bytes are a head."""
        self.tail = b""

    def body_begins(self) -> None:
        """A head ended: the next bytes are its body (or, with none, the next head)."""
        self.tail = b""
        self._chunk_left = 0
        self._size_line = b""
        self._last_chunk = False

    def fed(self, data: bytes, pos: int, stop: int) -> None:
        """``data[pos:stop]`` of a head or a chunked body went to the parser."""
        self.tail = (self.tail + data[max(pos, stop - 3) : stop])[-3:]

    def chunked_cut(self, data: bytes, pos: int, end: int) -> int:
        """How many bytes of a chunked body to hand to the parser from ``pos``: whole chunks
        (at most :data:`CHUNKED_SLICE`), followed through their size lines here, and from the
        last chunk on no further than the blank line that ends the body, so that a head
        pipelined behind it starts a slice of its own (it is counted, and waits). The state
        kept assumes the slice is fed (the parser takes it all or the connection ends); a
        size line this does not understand is one the parser refuses (then any blank line may
        end the body)."""
        if self._last_chunk:
            return self.cut(data, pos, end, CHUNKED_SLICE)
        limit = min(end, pos + CHUNKED_SLICE)
        at = pos
        while at < limit:
            if self._chunk_left:  # chunk data and the CRLF after it
                step = min(self._chunk_left, limit - at)
                self._chunk_left -= step
                at += step
                continue
            eol = data.find(b"\n", at, limit)
            if eol < 0:  # the size line goes on in the next read (the framing cap bounds it)
                self._size_line += data[at:limit]
                return limit - pos
            line, self._size_line = self._size_line + data[at:eol], b""
            at = eol + 1
            try:
                size = int(line.split(b";", 1)[0].rstrip(b"\r"), 16)
            except ValueError:
                size = 0
            if size <= 0:
                self._last_chunk = True
                break
            self._chunk_left = size + 2
        return at - pos

    def cut(self, data: bytes, pos: int, end: int, most: int) -> int:
        """How many bytes from ``pos`` to hand to the parser in one slice: at most ``most``
        (for a head: what the header cap still allows, the URL's bytes are capped on their
        own), and no further than the first blank line (``\\r\\n\\r\\n``, counting the bytes
        fed before): where a head ends, and where the last chunk of a chunked body does."""
        size = min(most, end - pos)
        tail = self.tail
        if tail:
            found = (tail + data[pos : pos + 3]).find(_TERMINATOR)
            if found >= 0:
                return min(size, found + len(_TERMINATOR) - len(tail))
        found = data.find(_TERMINATOR, pos, pos + size)
        if found >= 0:
            return found + len(_TERMINATOR) - pos
        return size


class WatchedFlow(FlowControl):
    """uvicorn's flow control, telling the protocol each time the application asks for body
    bytes (every ``receive()`` resumes reading, right after it sends a ``100 Continue`` owed)
    and whether reading had been paused: the body clock then starts again, as the client
    could not send while the server was not reading.

    While the protocol holds input back (``held_back()``: a pipelined request waits for the
    response before it), reading stays paused whoever asks: uvicorn resumes it on every
    ``receive()`` of the request being served, which let one connection queue requests
    without end. The protocol resumes it itself once the request waiting has started."""

    def __init__(
        self,
        transport: asyncio.Transport,
        on_resume: Callable[[bool], None],
        held_back: Callable[[], bool],
    ) -> None:
        super().__init__(transport)
        self._on_resume = on_resume
        self._held_back = held_back

    def resume_reading(self) -> None:
        if self._held_back():
            return
        self._on_resume(self.read_paused)
        super().resume_reading()
