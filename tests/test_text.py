"""The text rules stages share: language tags, charsets, line cleaning, sizes."""

from __future__ import annotations

import pytest

from monitor.text import decode_certain, human_size, one_line, paragraphs, primary_language


@pytest.mark.parametrize(
    ("tag", "primary"),
    [("fr", "fr"), ("FR-fr", "fr"), ("en_US", "en"), ("fr, en", "fr"), ("", None), (None, None),
     ("français", None), ("*", None)],
)  # fmt: skip
def test_primary_language(tag: object, primary: str | None) -> None:
    assert primary_language(tag) == primary


def test_decode_certain_trusts_boms_utf8_and_a_declared_charset_that_fits() -> None:
    assert decode_certain("Café".encode("utf-8-sig"), None) == "Café"
    assert decode_certain("Café".encode("utf-16"), None) == "Café"
    assert decode_certain("Café".encode(), "iso-8859-1") == "Café"  # valid UTF-8 wins
    assert decode_certain("Café".encode("latin-1"), "iso-8859-1") == "Café"
    assert decode_certain(b"\x93Caf\xe9\x94", "latin-1") == "“Café”"  # read as windows-1252
    assert decode_certain("Café".encode("latin-1"), None) is None  # a guess: the caller's call
    assert decode_certain("Café".encode("latin-1"), "utf-16") is None  # not a wide encoding
    assert decode_certain("Café".encode("latin-1"), "no-such-charset") is None


def test_line_cleaning() -> None:
    assert one_line(" a\r\n\tb\x00c\u2028d  ") == "a b c d"
    assert paragraphs("  un \r\n\r\n deux\x0btrois\x07 \u2029quatre ") == "un\ndeux\ntrois\nquatre"
    assert one_line(None) == paragraphs(42) == ""


def test_human_sizes() -> None:
    assert [human_size(n) for n in (512, 64 * 1024, 15 * 1024**2, 3 * 1024**3 // 2)] == [
        "512 bytes",
        "64 KiB",
        "15 MiB",
        "1.5 GiB",
    ]
