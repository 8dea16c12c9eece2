"""Where feeds come from: discovery from any address of a site, OPML in and out, and
editing the ``feeds:`` list of feeds.yaml in place.

    urls      canonical_url: one key per feed address (duplicates under other spellings)
    safexml   untrusted XML (OPML, sitemaps) without entity attacks
    discover  a site's address ─► feeds and news sitemaps found, each fetched and parsed
    opml      OPML bytes ─► feeds with tags; feeds ─► OPML 2.0 (pure)
    edit      feeds.yaml text ─► the same text with feeds added, removed or moved;
              saved after validation with an atomic rename (the daemon reloads it)
    plan      the rules of add, remove, replace and import over a document (pure)

Only `discover` does I/O on the network (through `monitor.fetch.Fetcher`), and only
`edit.save` writes a file; the CLI wires them together.
"""
