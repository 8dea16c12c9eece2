"""Small text rules that several stages share, written once: language tags,
charsets and line cleaning.

Feeds, pages, the configuration and the matcher all meet language tags
(``fr``, ``fr-FR``, ``en_US``, ``fr, en``) and need the same primary subtag
from them; feeds and pages both arrive as bytes whose encoding is declared,
guessed or wrong; and every text that reaches the database or an email header
must lose its control characters the same way.
"""

from __future__ import annotations

import codecs
import re
from urllib.parse import urlsplit

__all__ = [
    "ASIDE_MARKER",
    "ASIDE_WORDS",
    "CP1252_FALLBACK",
    "MAX_ASIDE_LINE_CHARS",
    "MAX_ASIDE_WORD_OFFSET",
    "MAX_MARKER_CHARS",
    "decode_certain",
    "drop_related_links",
    "human_size",
    "one_line",
    "paragraphs",
    "plain_link",
    "primary_language",
]

# --------------------------------------------------------------------------- language tags

_TAG_SEPARATOR = re.compile(r"[-_,;\s]")
_PRIMARY_SUBTAG = re.compile(r"[a-z]{2,3}")


def primary_language(tag: object) -> str | None:
    """The primary subtag of a language tag, lower-cased: ``"fr-FR"`` → ``"fr"``.

    Accepts the spellings feeds and pages use (``en_US``, ``fr, en``, ``FR``);
    None for anything that does not start with a 2- or 3-letter code.
    """
    if not isinstance(tag, str):
        return None
    primary = _TAG_SEPARATOR.split(tag.strip(), maxsplit=1)[0].lower()
    return primary if _PRIMARY_SUBTAG.fullmatch(primary) else None


# --------------------------------------------------------------------------- charsets

# The order matters: UTF-32 LE starts with the same two bytes as UTF-16 LE.
_BOMS = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
# XML 1.0 appendix F: how "<?" or "<" looks in the wide encodings when there is no BOM.
_WIDE_PREFIXES = (
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
)
# WHATWG: documents labelled Latin-1 or ASCII are decoded as windows-1252.
_LATIN1_CODECS = frozenset({"latin-1", "iso8859-1", "ascii", "cp1252"})
CP1252_FALLBACK = "monitor-cp1252-fallback"


def _read_bytes_as_cp1252(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: bytes that are not valid in the codec are read as windows-1252."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(_cp1252_char(byte) for byte in bad), error.end


def _cp1252_char(byte: int) -> str:
    # cp1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined: read those as Latin-1.
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:
        return chr(byte)


codecs.register_error(CP1252_FALLBACK, _read_bytes_as_cp1252)


def _codec_for(label: str) -> str | None:
    """Python's codec for a charset label, None when unknown (Latin-1 labels mean cp1252)."""
    try:
        name = codecs.lookup(label.strip()).name
    except (LookupError, ValueError):
        return None
    return "cp1252" if name in _LATIN1_CODECS else name


def decode_certain(content: bytes, declared: str | None) -> str | None:
    """The document as text when its encoding is beyond doubt, else None.

    In order: a byte order mark, the shape of a wide encoding (XML appendix F),
    valid UTF-8 (Latin-1 prose is almost never valid UTF-8), then the
    `declared` charset (HTTP header, XML declaration or ``<meta charset>``) if
    the bytes decode in it. A declared UTF-16 or UTF-32 is ignored: a
    document that could be read far enough to find the declaration is not in
    a wide encoding. The caller decides what to do with None.
    """
    for bom, encoding in _BOMS:
        if content.startswith(bom):
            return content[len(bom) :].decode(encoding, errors="replace")
    for prefix, encoding in _WIDE_PREFIXES:
        if content.startswith(prefix):
            return content.decode(encoding, errors="replace")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    codec = _codec_for(declared) if declared else None
    if codec is None or codec == "utf-8" or codec.startswith(("utf-16", "utf-32")):
        return None
    if codec == "cp1252":
        return content.decode("cp1252", errors=CP1252_FALLBACK)
    try:
        return content.decode(codec)
    except UnicodeDecodeError:
        return None


# --------------------------------------------------------------------------- asides

# What opens a related-link box ("Lire aussi : …", "À lire aussi sur BBC Afrique", "Read more:",
# "Related:") or a photo caption or credit. A marker starts with a capital or is all capitals:
# in running text "lire aussi" is just words.
ASIDE_MARKER = re.compile(
    r"(?:(?:À|A) (?:lire|LIRE) (?:aussi|AUSSI|également)|(?:Lire|LIRE) (?:aussi|AUSSI|également)"
    r"|À LIRE AUSSI|A LIRE AUSSI|Voir aussi|VOIR AUSSI|À voir aussi|Sur le même sujet"
    r"|Read (?:more|also|next)|READ MORE|See also|Also read|More on this story"
    r"|Related(?= ?:|$)|Related (?:[Aa]rticles?|[Ss]tories|[Cc]ontent|[Cc]overage|[Pp]osts?)"
    r"|Légende (?:image|photo|de l'image)|Source (?:de l'image|image)|Crédit(?:s)? photo"
    r"|Image caption|Image source|Photo credit|Copyright de l'image)"
    r"(?=[\s:,.»>\[]|$)"
)
# Every marker holds one of these words (folded: lower case, no accents), which an analysed
# text finds in its index of forms: the pattern is tried only around them.
ASIDE_WORDS = (
    "aussi", "egalement", "sujet", "read", "see", "related", "story", "legende", "source",
    "credit", "credits", "caption", "copyright",
)  # fmt: skip
MAX_ASIDE_WORD_OFFSET = 16  # a marker starts at most this far before its word ("Sur le même sujet")
MAX_MARKER_CHARS = 40  # the longest marker after its word, and what its lookahead reads
# A related-link line is at most this long; a longer line starting with a marker is a
# paragraph that opens with an inlined box.
MAX_ASIDE_LINE_CHARS = 300
_SENTENCE_PUNCTUATION = '.!?…»"”'
_MARKER_TAIL = re.compile(r"^[\s:»>\-–—]+|\s*\[edit\]$|[\s:»>\-–—]+$")


def drop_related_links(text: str) -> str:
    """``text`` (one paragraph a line) without its related-link and caption lines.

    A line that starts with a marker and is at most `MAX_ASIDE_LINE_CHARS` long goes;
    a marker alone on its line ("À lire aussi :", "Related") takes with it the next
    line when that one is short and reads as a title (no final punctuation).
    """
    lines = text.split("\n")
    kept: list[str] = []
    skip_title = False
    for line in lines:
        stripped = line.strip()
        if skip_title:
            skip_title = False
            if len(stripped) <= 150 and not stripped.endswith(tuple(_SENTENCE_PUNCTUATION)):
                continue
        marker = ASIDE_MARKER.match(stripped)
        if marker is not None and len(stripped) <= MAX_ASIDE_LINE_CHARS:
            rest = _MARKER_TAIL.sub("", stripped[marker.end() :])
            # A marker with nothing after it (or only "SUR REGARDS.FR") heads the title below.
            skip_title = not rest or rest.upper() == rest
            continue
        kept.append(line)
    return "\n".join(kept)


# --------------------------------------------------------------------------- sizes


def human_size(size: float) -> str:
    """Bytes as people read them: ``64 KiB``, ``15 MiB``, ``1.5 GiB``, ``512 bytes``."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{int(size)} bytes"


# --------------------------------------------------------------------------- line cleaning

# C0 and C1 controls and DEL, except the line breaks handled below.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LINE_BREAKS = re.compile("\r\n?|[\x0b\x0c\x85\u2028\u2029]")
_SPACES_IN_LINE = re.compile(r"[^\S\n]+")
_ANY_BREAK_OR_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"\s+")


def paragraphs(text: object) -> str:
    """Plain text with one paragraph per line: line breaks of every kind become
    ``\\n``, other control characters spaces, runs of spaces one, and blank
    lines go. Anything but a string gives ``""``."""
    if not isinstance(text, str):
        return ""
    text = _CONTROLS.sub(" ", _LINE_BREAKS.sub("\n", text))
    lines = (_SPACES_IN_LINE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def plain_link(url: str | None, *, refused: str = "") -> str | None:
    """``url`` when it is a plain http(s) link with a host and no white space or control
    character (nor any of ``refused``); None for anything else, which is then shown as
    text, never as a link."""
    if not url:
        return None
    candidate = url.strip()
    if _ANY_BREAK_OR_CONTROL.search(candidate) or any(char.isspace() for char in candidate):
        return None
    if any(char in candidate for char in refused):
        return None
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return candidate


def one_line(text: object) -> str:
    """Text on a single line: every control character and line break becomes a
    space, whitespace runs one space. Safe for titles, logs and mail headers."""
    if not isinstance(text, str):
        return ""
    return _SPACES.sub(" ", _ANY_BREAK_OR_CONTROL.sub(" ", text)).strip()
