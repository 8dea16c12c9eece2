"""XML from strangers (OPML files, sitemaps), read without the classic XML attacks.

lxml is told never to substitute entities, load a DTD or touch the network, and
a document that declares entities at all is refused before parsing: neither
OPML nor a sitemap needs them, and entity declarations are how the "billion
laughs" and external-entity attacks start. (defusedxml is not installed; this is
the same policy with the parser we have.)
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from monitor.errors import SourceError

__all__ = ["local_name", "parse_untrusted_xml"]

_ENTITY_DECLARATION = re.compile(rb"<!ENTITY", re.IGNORECASE)
_ROOT_START = re.compile(rb"<[A-Za-z_]")


def parse_untrusted_xml(data: bytes, *, what: str) -> Any:
    """The root element of `data`; `SourceError` naming `what` when it cannot be read safely."""
    refused = SourceError(
        f"{what} declares XML entities (<!ENTITY ...>), which it has no use for and which "
        "can exhaust memory (the 'billion laughs' attack); refused: export it again "
        "from your reader"
    )
    root_start = _ROOT_START.search(data)
    prolog = data[: root_start.start()] if root_start else data
    if _ENTITY_DECLARATION.search(prolog):
        raise refused
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        if "amplification" in str(error):  # libxml2's own guard, e.g. for a UTF-16 bomb
            raise refused from None
        raise SourceError(f"{what} is not well-formed XML ({error}); nothing was read") from None
    except ValueError as error:  # e.g. an encoding declaration lxml cannot use
        raise SourceError(f"{what} cannot be read as XML ({error})") from None
    if root is None:
        raise SourceError(f"{what} is empty")
    # The byte scan misses a prolog in UTF-16; lxml has parsed it without substituting.
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise refused
    return root


def local_name(element: Any) -> str:
    """An element's tag without its namespace, lower-cased; "" for comments and the like."""
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].lower()
