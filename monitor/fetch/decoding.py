"""Bounded decoding of response bodies: Content-Encoding layers and the decoded-size cap.

The body cap counts *decoded* bytes and every decompressor's output is bounded
per step, so a gzip, brotli or zstd bomb stops at the cap with bounded memory.

Content-Encoding: gzip, deflate, br (`brotli` 1.2 or later, whose
`output_buffer_limit` bounds each step) and zstd (`zstandard`, whose stream
writer hands its output over in `_DECODE_STEP` pieces). httpx could decode
br and zstd itself, but only a whole network read at a time: one 64 KiB read
of a bomb would already be gigabytes. Any other coding (compress, sdch, a
typo) gets a DECODING failure that names it.

A body that is itself a gzip file (a `.xml.gz` sitemap served as
application/gzip, with no Content-Encoding) is unpacked by `gunzip_file`,
within the same cap.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import brotli
import zstandard

__all__ = [
    "ACCEPT_ENCODING",
    "BodyTooLarge",
    "BoundedDecoder",
    "UndecodableBody",
    "content_codings",
    "gunzip_file",
]

ACCEPT_ENCODING = "gzip, deflate, br, zstd"
_CODINGS = ("gzip", "x-gzip", "deflate", "br", "zstd")
_GZIP_MAGIC = b"\x1f\x8b"
# Decompressor output per step: bounds memory whatever the compression ratio.
_DECODE_STEP = 64 * 1024


class BodyTooLarge(Exception):
    """The decoded body would exceed the cap."""


class UndecodableBody(Exception):
    """The body is corrupt, cut short, or uses a Content-Encoding we do not decode."""


class _Layer(Protocol):
    def decode(self, data: bytes) -> Iterator[bytes]: ...

    def check_complete(self) -> None: ...


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


class _BrotliLayer:
    """One br layer: `output_buffer_limit` stops each step at `_DECODE_STEP` bytes."""

    def __init__(self) -> None:
        self._decompressor = brotli.Decompressor()
        self._fed = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        if not data:
            return
        if self._decompressor.is_finished():
            raise UndecodableBody("data after the end of the brotli stream")
        self._fed = True
        pending = data
        while True:
            try:
                piece = self._decompressor.process(pending, output_buffer_limit=_DECODE_STEP)
            except brotli.error as error:
                raise UndecodableBody(f"corrupt brotli data ({error})") from None
            if piece:
                yield piece
            if not piece or self._decompressor.is_finished():
                return
            # A step that filled its limit may leave output behind: ask again with no
            # input until a step makes nothing (`can_accept_more_data` does not say).
            pending = b""

    def check_complete(self) -> None:
        if self._fed and not self._decompressor.is_finished():
            raise UndecodableBody("the compressed stream is cut short")


class _ZstdLayer:
    """One zstd layer (one or more frames). zstandard's decompressor has no output
    limit, so input goes in in small slices: at zstd's best ratio (an RLE block,
    4 bytes for 128 KiB) one slice cannot make more than a few MiB at once."""

    _INPUT_SLICE = 128

    def __init__(self) -> None:
        self._decompressor = zstandard.ZstdDecompressor().decompressobj()
        self._fed = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        view = memoryview(data)
        for start in range(0, len(view), self._INPUT_SLICE):
            pending = bytes(view[start : start + self._INPUT_SLICE])
            while pending:
                if self._decompressor.eof:
                    self._decompressor = zstandard.ZstdDecompressor().decompressobj()
                self._fed = True
                try:
                    piece = self._decompressor.decompress(pending)
                except zstandard.ZstdError as error:
                    raise UndecodableBody(f"corrupt zstd data ({error})") from None
                pending = self._decompressor.unused_data if self._decompressor.eof else b""
                if piece:
                    yield piece

    def check_complete(self) -> None:
        if self._fed and not self._decompressor.eof:
            raise UndecodableBody("the compressed stream is cut short")


def _layer(coding: str) -> _Layer:
    if coding == "br":
        return _BrotliLayer()
    if coding == "zstd":
        return _ZstdLayer()
    return _ZlibLayer(coding)


class BoundedDecoder:
    """Undoes Content-Encoding layers; more than `limit` decoded bytes raises BodyTooLarge."""

    def __init__(self, codings: Sequence[str], limit: int) -> None:
        self._layers = [_layer(coding) for coding in reversed(codings)]
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
    unsupported = [c for c in codings if c not in _CODINGS]
    if unsupported:
        raise UndecodableBody(
            f"the server used Content-Encoding {', '.join(unsupported)}, which we did not ask for"
        )
    return codings


def gunzip_file(content: bytes, limit: int) -> bytes:
    """`content` unpacked when it is a gzip file (a `.xml.gz` sitemap), else as it is.

    XML, HTML and JSON never start with the gzip magic bytes, so the body decides,
    not the Content-Type or the URL. Raises BodyTooLarge past `limit` decoded bytes
    and UndecodableBody for a corrupt or truncated file.
    """
    if not content.startswith(_GZIP_MAGIC):
        return content
    decoder = BoundedDecoder(["gzip"], limit)
    view = memoryview(content)
    for start in range(0, len(view), _DECODE_STEP):
        decoder.feed(bytes(view[start : start + _DECODE_STEP]))
    return decoder.finish()
