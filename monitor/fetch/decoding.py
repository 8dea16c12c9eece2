"""Bounded decoding of response bodies: Content-Encoding layers and the decoded-size cap.

The body cap counts *decoded* bytes and the decompressor output is bounded
per step, so a gzip bomb stops at the cap with bounded memory.

Content-Encoding: gzip and deflate only. `br` is never advertised: bounded
brotli decoding needs the optional `brotli` package (1.2 or later, for
`output_buffer_limit`), which is not a dependency; a server that sends `br`
(or any other coding) anyway gets a DECODING failure.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "ACCEPT_ENCODING",
    "BodyTooLarge",
    "BoundedDecoder",
    "UndecodableBody",
    "content_codings",
]

ACCEPT_ENCODING = "gzip, deflate"
# Decompressor output per step: bounds memory whatever the compression ratio.
_DECODE_STEP = 64 * 1024


class BodyTooLarge(Exception):
    """The decoded body would exceed the cap."""


class UndecodableBody(Exception):
    """The body is corrupt, cut short, or uses a Content-Encoding we do not decode."""


class _ZlibLayer:
    """One gzip or deflate layer, decoded in bounded steps."""

    def __init__(self, coding: str) -> None:
        self._gzip = coding in ("gzip", "x-gzip")
        # "deflate" should be zlib-wrapped, but servers also send raw deflate. Until the
        # zlib attempt produces output, keep its input to replay it as raw deflate.
        self._undecided: bytearray | None = None if self._gzip else bytearray()
        self._decompressor = self._new()
        self._fed = False

    def _new(self) -> Any:
        if self._gzip:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(zlib.MAX_WBITS)

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._undecided is not None:
            self._undecided += data
        pending = data
        while pending:
            if self._decompressor.eof:
                if not self._gzip:
                    return  # bytes after the end of a deflate stream: ignored, as browsers do
                self._decompressor = self._new()  # a further gzip member follows
            self._fed = True
            try:
                piece = self._decompressor.decompress(pending, _DECODE_STEP)
            except zlib.error as error:
                if self._undecided is None:
                    raise UndecodableBody(str(error)) from None
                pending, self._undecided = bytes(self._undecided), None
                self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            pending = self._decompressor.unconsumed_tail or self._decompressor.unused_data
            if piece:
                self._undecided = None
                yield piece

    def check_complete(self) -> None:
        if self._fed and not self._decompressor.eof:
            raise UndecodableBody("the compressed stream is cut short")


class BoundedDecoder:
    """Undoes Content-Encoding layers; more than `limit` decoded bytes raises BodyTooLarge."""

    def __init__(self, codings: Sequence[str], limit: int) -> None:
        self._layers = [_ZlibLayer(coding) for coding in reversed(codings)]
        self._limit = limit
        self._decoded = bytearray()

    def feed(self, data: bytes) -> None:
        self._push(0, data)

    def _push(self, depth: int, data: bytes) -> None:
        if depth == len(self._layers):
            if len(self._decoded) + len(data) > self._limit:
                raise BodyTooLarge
            self._decoded += data
            return
        for piece in self._layers[depth].decode(data):
            self._push(depth + 1, piece)

    def finish(self) -> bytes:
        for layer in self._layers:
            layer.check_complete()
        return bytes(self._decoded)


def content_codings(header: str | None) -> list[str]:
    """The codings applied to the body, in order; identity dropped; unknown ones raise UndecodableBody."""
    codings = [part.strip().lower() for part in (header or "").split(",")]
    codings = [coding for coding in codings if coding and coding != "identity"]
    unsupported = [c for c in codings if c not in ("gzip", "x-gzip", "deflate")]
    if unsupported:
        raise UndecodableBody(
            f"the server used Content-Encoding {', '.join(unsupported)}, which we did not ask for"
        )
    return codings
