"""One story, once: canonical URLs, near-duplicate texts, and the pipeline that uses them.

* the canonical URL table: real-world URL shapes and what they become, for the reader
  (`clean_url`) and as the article's identity (`url_key`);
* the page's own canonical URL, believed only on the same site;
* signatures and the story index;
* clustering on the shared corpus (tests/story_eval.py): no two stories merged, and the
  recall on articles republished with another template, title and URL held above a floor;
* through the real pipeline and local HTTP servers: a wire story from two outlets is one
  hit naming the other outlet, a copy after the digest went out adds no hit, nor does the
  same URL under a new GUID or behind ``?from=``, ``utm_*`` or AMP variants;
* migration 0005 on an existing database: keys recomputed, colliding rows both kept.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlite_utils
from click.testing import CliRunner

from monitor.articles import InlineArticles, article_from_page
from monitor.cli import main
from monitor.digest import build_digest, html_part, render_message
from monitor.errors import StorageError
from monitor.extract import extract_page
from monitor.fetch import Fetcher
from monitor.models import (
    ArticleJob,
    ArticleText,
    Entry,
    FeedSpec,
    Fetched,
    FetchLimits,
    NewArticle,
    NewBody,
    PollCounts,
    TextSource,
    Watchlist,
)
from monitor.pipeline import Pipeline
from monitor.query import parse_query
from monitor.schedule import decide_update
from monitor.store import MIGRATIONS, Store
from monitor.store.story_index import STORY_WINDOW
from monitor.stories import (
    MIN_WORDS,
    StoryIndex,
    article_url,
    clean_url,
    is_tracking_parameter,
    same_site,
    signature,
    similarity,
    text_words,
    url_key,
)
from tests.corpus import require_corpus
from tests.servers import HTTPTestServer, Reply
from tests.story_eval import (
    built_pairs,
    built_recall,
    cluster,
    corpus_documents,
    outlet_a_page,
    outlet_b_page,
    story_labels,
)

# --------------------------------------------------------------------------- URLs

# (as linked, as shown to the reader, as the article's identity)
URL_TABLE = [
    # tracking parameters of every kind go; the rest stays as written
    (
        "https://www.lemonde.fr/afrique/article/2024/05/02/togo_123_3212.html?xtor=RSS-3208",
        "https://www.lemonde.fr/afrique/article/2024/05/02/togo_123_3212.html",
        "//lemonde.fr/afrique/article/2024/05/02/togo_123_3212.html",
    ),
    (
        "https://www.bbc.com/afrique/articles/c1234?at_medium=RSS&at_campaign=rss",
        "https://www.bbc.com/afrique/articles/c1234",
        "//bbc.com/afrique/articles/c1234",
    ),
    (
        "https://www.rfi.fr/fr/afrique/20240502-togo?utm_source=rss&utm_medium=feed&utm_campaign=x",
        "https://www.rfi.fr/fr/afrique/20240502-togo",
        "//rfi.fr/fr/afrique/20240502-togo",
    ),
    (
        "https://news.example.com/story?id=42&fbclid=IwAR0abc&gclid=xyz",
        "https://news.example.com/story?id=42",
        "//news.example.com/story?id=42",
    ),
    (
        "https://jeuneafrique.com/1234/politique/?from=rss",
        "https://jeuneafrique.com/1234/politique/",
        "//jeuneafrique.com/1234/politique",
    ),
    (
        "https://www.theguardian.com/world/2024/may/02/togo?CMP=share_btn_tw",
        "https://www.theguardian.com/world/2024/may/02/togo",
        "//theguardian.com/world/2024/may/02/togo",
    ),
    (
        "https://news.example.com/a?mc_cid=1a2b&mc_eid=3c4d&ref=homepage&ns_mchannel=rss",
        "https://news.example.com/a",
        "//news.example.com/a",
    ),
    (
        "https://news.example.com/a?_hsenc=p2A&_hsmi=123&ocid=msedgntp&smid=tw-share",
        "https://news.example.com/a",
        "//news.example.com/a",
    ),
    # a tracker in the fragment goes; parameters are sorted in the key only
    (
        "http://www.example.fr/actu/togo.html#xtor=RSS-1",
        "http://www.example.fr/actu/togo.html",
        "//example.fr/actu/togo.html",
    ),
    (
        "https://Example.COM:443/b?z=1&a=2",
        "https://example.com/b?z=1&a=2",
        "//example.com/b?a=2&z=1",
    ),
    # AMP variants: the same article
    (
        "https://amp.theguardian.com/world/2024/may/02/togo",
        "https://amp.theguardian.com/world/2024/may/02/togo",
        "//theguardian.com/world/2024/may/02/togo",
    ),
    (
        "https://www.example.com/news/togo/amp/",
        "https://www.example.com/news/togo/amp/",
        "//example.com/news/togo",
    ),
    (
        "https://www.example.com/amp/news/togo",
        "https://www.example.com/amp/news/togo",
        "//example.com/news/togo",
    ),
    (
        "https://www.example.com/news/togo.amp",
        "https://www.example.com/news/togo.amp",
        "//example.com/news/togo",
    ),
    (
        "https://www.example.com/news/togo.amp.html",
        "https://www.example.com/news/togo.amp.html",
        "//example.com/news/togo.html",
    ),
    (
        "https://www.example.com/news/togo?amp",
        "https://www.example.com/news/togo",
        "//example.com/news/togo",
    ),
    (
        "https://www.example.com/news/togo?amp=1",
        "https://www.example.com/news/togo",
        "//example.com/news/togo",
    ),
    (
        "https://www.washingtonpost.com/world/2024/05/02/togo/?outputType=amp",
        "https://www.washingtonpost.com/world/2024/05/02/togo/",
        "//washingtonpost.com/world/2024/05/02/togo",
    ),
    (
        "https://www-example-com.cdn.ampproject.org/c/s/www.example.com/news/togo",
        "https://www-example-com.cdn.ampproject.org/c/s/www.example.com/news/togo",
        "//example.com/news/togo",
    ),
    (
        "https://www.google.com/amp/s/www.example.com/news/togo",
        "https://www.google.com/amp/s/www.example.com/news/togo",
        "//example.com/news/togo",
    ),
    # what must stay: value-less ids, words that merely start like a tracker, path case
    (
        "https://www.example.com/story.php?12345",
        "https://www.example.com/story.php?12345",
        "//example.com/story.php?12345",
    ),
    (
        "https://www.example.com/photos?gallery=2&global=1&affaire=3",
        "https://www.example.com/photos?gallery=2&global=1&affaire=3",
        "//example.com/photos?affaire=3&gallery=2&global=1",
    ),
    (
        "https://www.example.com/#!/story/5",
        "https://www.example.com/#!/story/5",
        "//example.com/#!/story/5",
    ),
    ("https://[::1]:99999/", "https://[::1]:99999/", "https://[::1]:99999/"),  # invalid port
    ("urn:uuid:1225c695-cfb8", "urn:uuid:1225c695-cfb8", "urn:uuid:1225c695-cfb8"),
    (
        "https://www.example.com/search?q=a;b&utm_source=x",
        "https://www.example.com/search?q=a;b",
        "//example.com/search?q=a%3Bb",
    ),
    ("http://127.0.0.1:8080/a/", "http://127.0.0.1:8080/a/", "//127.0.0.1:8080/a"),
    (
        "https://fr.example.org/caf%C3%A9?q=a+b",
        "https://fr.example.org/caf%C3%A9?q=a+b",
        "//fr.example.org/caf%C3%A9?q=a%20b",
    ),
]


@pytest.mark.parametrize(("linked", "shown", "key"), URL_TABLE)
def test_canonical_url_table(linked: str, shown: str, key: str) -> None:
    assert clean_url(linked) == shown
    assert url_key(linked) == key
    assert url_key(shown) == key  # the URL shown is the same article


SAME_ARTICLE = [
    ("http://example.com/a/b", "https://www.example.com/a/b/"),
    ("https://example.com/a?id=3&p=1", "https://example.com/a?p=1&id=3&utm_source=x"),
    ("https://example.com/café", "https://example.com/caf%C3%A9"),
    ("https://example.com/a#comments", "https://example.com/a"),
]
DIFFERENT_ARTICLES = [
    ("https://example.com/story?id=1", "https://example.com/story?id=2"),
    ("https://example.com/story.php?12345", "https://example.com/story.php?12346"),
    ("https://example.com/News/A", "https://example.com/news/a"),
    ("https://example.com/photos?gallery=1", "https://example.com/photos?gallery=2"),
    ("https://a.example.com/x", "https://b.example.com/x"),
    ("https://example.com:8080/x", "https://example.com/x"),
]


@pytest.mark.parametrize(("first", "second"), SAME_ARTICLE)
def test_spellings_of_one_article_share_a_key(first: str, second: str) -> None:
    assert url_key(first) == url_key(second)


@pytest.mark.parametrize(("first", "second"), DIFFERENT_ARTICLES)
def test_different_articles_keep_different_keys(first: str, second: str) -> None:
    assert url_key(first) != url_key(second)


def test_tracking_parameters_are_whole_names() -> None:
    assert is_tracking_parameter("utm_campaign")
    assert is_tracking_parameter("FBCLID")
    assert is_tracking_parameter("at_medium")
    assert not is_tracking_parameter("gallery")
    assert not is_tracking_parameter("id")
    assert not is_tracking_parameter("page")


def test_same_site_is_the_registrable_domain() -> None:
    assert same_site("https://www.bbc.com/afrique/1", "https://news.bbc.com/2")
    assert same_site("https://www.bbc.co.uk/a", "http://bbc.co.uk/b")
    assert not same_site("https://a.github.io/x", "https://b.github.io/x")
    assert not same_site("https://lemonde.fr/a", "https://lefigaro.fr/a")
    assert same_site("http://127.0.0.1:8000/a", "http://127.0.0.1:8000/b")
    assert not same_site("http://127.0.0.1:8000/a", "http://127.0.0.1:8001/a")
    assert not same_site("https://lemonde.fr/a", "/relative")


def test_article_url_believes_the_canonical_link_on_the_same_site_only() -> None:
    amp = "https://amp.example.com/news/togo?utm_source=rss"
    assert article_url(amp, "https://www.example.com/news/togo") == (
        "https://www.example.com/news/togo"
    )
    assert article_url(amp, "https://other.org/news/togo") == "https://amp.example.com/news/togo"
    assert article_url(amp, None) == "https://amp.example.com/news/togo"
    # A home page declared as every article's canonical URL is not believed.
    assert article_url(amp, "https://www.example.com/") == "https://amp.example.com/news/togo"


def test_the_page_canonical_link_becomes_the_article_url() -> None:
    page = (
        b"<html><head><title>T</title>"
        b'<link rel="canonical" href="/news/togo-accord?utm_medium=social">'
        b"</head><body><article><p>"
        + b"Le Togo a sign\xc3\xa9 un accord de coop\xc3\xa9ration militaire. " * 10
        + b"</p></article></body></html>"
    )
    extraction = extract_page(page, url="https://amp.example.com/amp/news/togo-accord")
    assert extraction.canonical_url == "https://amp.example.com/news/togo-accord?utm_medium=social"
    entry = Entry("g", "https://amp.example.com/amp/news/togo-accord", "T", "", "", None)
    article = article_from_page(page, url=entry.link, entry=entry)
    assert article.url == "https://amp.example.com/news/togo-accord"
    og_only = page.replace(
        b'<link rel="canonical" href="/news/togo-accord?utm_medium=social">',
        b'<meta property="og:url" content="https://elsewhere.org/copy">',
    )
    assert extract_page(og_only, url=entry.link).canonical_url == "https://elsewhere.org/copy"
    assert article_from_page(og_only, url=entry.link, entry=entry).url == entry.link


# --------------------------------------------------------------------------- texts

WIRE_PARAGRAPHS = [
    "Le Parlement togolais a adopté mardi à l'unanimité le projet de loi autorisant la "
    "ratification de l'accord de coopération militaire signé avec la Fédération de Russie.",
    "Selon le ministre délégué chargé des Forces armées, l'accord prévoit l'échange "
    "d'informations, la formation des militaires togolais en Russie et la venue "
    "d'instructeurs russes dans les écoles militaires du pays.",
    "Le texte couvre aussi la lutte contre le terrorisme, la piraterie maritime dans le golfe "
    "de Guinée et les opérations de maintien de la paix, a précisé le gouvernement.",
    "Lomé fait face depuis 2021 à des attaques de groupes armés dans le nord du pays, près de "
    "la frontière avec le Burkina Faso, où plusieurs soldats ont été tués ces derniers mois.",
    "Des diplomates occidentaux ont dit suivre ce rapprochement avec attention, alors que "
    "Moscou renforce sa présence militaire au Sahel, au Mali, au Burkina Faso et au Niger.",
]
WIRE_TEXT = "\n".join(WIRE_PARAGRAPHS)


def test_text_words_fold_case_accents_and_punctuation() -> None:
    assert text_words("L’Élysée, «\u00a0déçu\u00a0» : ÇA suffit !") == [
        "l",
        "elysee",
        "decu",
        "ca",
        "suffit",
    ]


def test_a_signature_needs_enough_words() -> None:
    assert signature("Un résumé de deux phrases. Rien de plus.") is None
    words = WIRE_TEXT.split()
    assert len(words) > MIN_WORDS
    assert signature(" ".join(words[: MIN_WORDS - 10])) is None
    assert signature(WIRE_TEXT) is not None


def test_the_same_text_reformatted_has_the_same_signature() -> None:
    original = signature(WIRE_TEXT)
    reformatted = signature(
        WIRE_TEXT.upper().replace("'", "’").replace("é", "e").replace("\n", " ")
    )
    assert original is not None and reformatted is not None
    assert similarity(original, reformatted) == 1.0


def test_the_story_index_finds_edited_copies_and_not_other_stories() -> None:
    index = StoryIndex()
    original = signature(WIRE_TEXT)
    assert original is not None
    index.add(7, original)
    edited = signature("LOMÉ (AFP) — " + "\n".join(WIRE_PARAGRAPHS[:4]))
    assert edited is not None
    assert [match.article_id for match in index.same_story(edited)] == [7]
    other = signature(
        " ".join(
            f"Le cours du cacao a progressé de {n} % à Abidjan, selon les exportateurs "
            f"ivoiriens interrogés lors de la séance numéro {n}."
            for n in range(8)
        )
    )
    assert other is not None
    assert index.same_story(other) == []
    index.remove(7)
    assert index.same_story(edited) == [] and len(index) == 0


# --------------------------------------------------------------------------- corpus

# Measured when the threshold was chosen (0.75, bench/bench_stories.py, 150 articles each):
# 100 % of template-only copies, 97 % of edited copies and 82 % of copies cut to 60 % are
# found. Floors keep a margin for the 40-article sample this test builds.
TEMPLATE_RECALL_FLOOR = 1.0
EDITED_RECALL_FLOOR = 0.9
TRUNCATED_RECALL_FLOOR = 0.7


@pytest.mark.corpus
def test_no_two_corpus_stories_are_merged_and_republished_copies_are_found() -> None:
    root = require_corpus()
    documents = corpus_documents(root)
    labels = story_labels(documents)
    result = cluster(documents, labels)
    print(
        f"\ncorpus: {result.documents} texts signed ({result.unsigned} too short), "
        f"{len(result.wrong_merges)} stories wrongly merged, "
        f"{result.found_pairs}/{result.same_pairs} same-story pairs found"
    )
    assert result.documents > 1500
    assert result.wrong_merges == []
    # Same-URL snapshots and feeds sharing entries: found, but for an excerpt beside its
    # full text and a sponsor's two texts behind one link (see bench/bench_stories.py).
    assert result.found_pairs >= result.same_pairs - 2

    recall = built_recall(built_pairs(documents, count=40))
    print(f"built pairs: {recall}")
    found, total, _ = recall["template"]
    assert total >= 35 and found / total >= TEMPLATE_RECALL_FLOOR
    found, total, _ = recall["edited"]
    assert total >= 35 and found / total >= EDITED_RECALL_FLOOR
    found, total, _ = recall["truncated"]
    assert total >= 35 and found / total >= TRUNCATED_RECALL_FLOOR


# --------------------------------------------------------------------------- pipeline

WATCHLISTS = [
    Watchlist(name="Togo Russie", query=parse_query('Togo AND "coopération militaire"', {})),
]
ARTICLE_PATH_A = "/2026/12/01/togo-russie-accord-militaire.html"


def rss(title: str, items: list[tuple[str, str]]) -> bytes:
    body = "".join(
        f"<item><title>{title}</title><link>{link.replace('&', '&amp;')}</link>"
        f"<guid isPermaLink='false'>{guid}</guid><description>{title}</description></item>"
        for guid, link in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><language>fr</language>{body}</channel></rss>"
    ).encode()


class Outlets:
    """Two news sites on two local servers, carrying the same wire story."""

    def __init__(self, first: HTTPTestServer, second: HTTPTestServer) -> None:
        self.first, self.second = first, second
        canonical_a = f'<link rel="canonical" href="{first.url(ARTICLE_PATH_A)}">'
        page_a = outlet_a_page("Le Togo ratifie son accord militaire avec Moscou", WIRE_PARAGRAPHS)
        first.routes[ARTICLE_PATH_A] = Reply(
            body=page_a.replace(b"</head>", canonical_a.encode() + b"</head>")
        )
        first.routes["/amp" + ARTICLE_PATH_A] = Reply(body=page_a)
        edited = ["LOMÉ (AFP) — " + WIRE_PARAGRAPHS[0], *WIRE_PARAGRAPHS[1:]]
        second.routes["/afrique/depeche-4821"] = Reply(
            body=outlet_b_page("Togo : feu vert du Parlement à l'accord avec la Russie", edited)
        )
        self.feed_a(["a-1"])
        self.feed_b(["b-1"])
        self.spec_a = FeedSpec(url=first.url("/rss.xml"), name="Le Quotidien")
        self.spec_b = FeedSpec(url=second.url("/feed"), name="Info Matin")

    def fetches(self, path: str) -> int:
        """Requests to `path` on the first outlet, whatever their query string."""
        return sum(1 for request in self.first.requests if request.path.split("?")[0] == path)

    def feed_a(self, guids: list[str], link: str | None = None) -> None:
        link = link or self.first.url(ARTICLE_PATH_A) + "?utm_source=rss&utm_medium=feed"
        self.first.routes["/rss.xml"] = Reply(
            body=rss("Le Quotidien", [(guid, link) for guid in guids])
        )

    def feed_b(self, guids: list[str]) -> None:
        link = self.second.url("/afrique/depeche-4821") + "?from=rss"
        self.second.routes["/feed"] = Reply(
            body=rss("Info Matin", [(guid, link) for guid in guids])
        )


@pytest.fixture
def outlets() -> Iterator[Outlets]:
    with HTTPTestServer() as first, HTTPTestServer() as second:
        yield Outlets(first, second)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "monitor.db") as opened:
        yield opened


@pytest.fixture
def pipeline(store: Store) -> Iterator[Pipeline]:
    limits = FetchLimits(timeout=3, connect_timeout=1.0)
    with Fetcher(limits) as fetcher:
        built = Pipeline(
            store=store,
            fetcher=fetcher,
            articles=InlineArticles(WATCHLISTS),
            clock=lambda: datetime.now(UTC),
        )
        yield built
        built.close()


def test_a_wire_story_from_two_outlets_is_one_hit_naming_the_other(
    pipeline: Pipeline, store: Store, outlets: Outlets
) -> None:
    first = pipeline.poll_feed(outlets.spec_a)
    second = pipeline.poll_feed(outlets.spec_b)
    assert (first.new_hits, second.new_hits) == (1, 0)
    assert (first.new_articles, second.new_articles) == (1, 1)  # the copy is kept
    [hit] = store.hits()
    assert hit.feed == "Le Quotidien"
    assert hit.url == outlets.first.url(ARTICLE_PATH_A)  # canonical, without utm_*
    [copy] = hit.also_in
    assert copy.feed == "Info Matin"
    assert copy.url == outlets.second.url("/afrique/depeche-4821")  # without ?from=rss
    assert "Parlement" in copy.title
    preview = store.preview_digest(now=datetime.now(UTC))
    assert preview is not None and preview.hits[0].also_in == (copy,)
    claimed = store.claim_digest("2026-12-01", now=datetime.now(UTC))
    assert claimed is not None and [hit.also_in for hit in claimed.hits] == [(copy,)]
    # The e-mail shows the story once, naming and linking the other outlet.
    utc = ZoneInfo("UTC")
    content = build_digest(claimed, watchlist_order=[], tz=utc, now=datetime.now(UTC))
    message = render_message(
        content,
        sender="a@example.org",
        recipients=["b@example.org"],
        subject="monitor",
        message_id=claimed.message_id,
        tz=utc,
    )
    plain = message.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert text.count(f"<{hit.url}>") == 1
    assert f"Also in: Info Matin <{copy.url}>" in text
    assert f'<a href="{copy.url}">Info Matin</a>' in html_part(message)


def test_a_copy_arriving_after_the_digest_adds_no_hit_and_shows_in_hits_json(
    tmp_path: Path, outlets: Outlets
) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"""
database: monitor.db
feeds:
  - url: {outlets.spec_a.url}
    name: Le Quotidien
  - url: {outlets.spec_b.url}
    name: Info Matin
watchlists:
  - name: Togo Russie
    query: 'Togo AND "coopération militaire"'
digest:
  from: veille@example.org
  to: [analyste@example.org]
  outbox: digests/
""",
        encoding="utf-8",
    )
    now = datetime.now(UTC)
    with Store(tmp_path / "monitor.db") as store, Fetcher(FetchLimits(timeout=3)) as fetcher:
        pipeline = Pipeline(store, fetcher, InlineArticles(WATCHLISTS), clock=lambda: now)
        try:
            assert pipeline.poll_feed(outlets.spec_a).new_hits == 1
            claimed = store.claim_digest("2026-12-01", now=now)
            assert claimed is not None and claimed.hits[0].also_in == ()
            store.finish_digest(claimed.key, now=now)
            assert pipeline.poll_feed(outlets.spec_b).new_hits == 0
            assert store.claim_digest("2026-12-02", now=now + timedelta(days=1)) is None
        finally:
            pipeline.close()
    result = CliRunner().invoke(main, ["-c", str(config), "hits", "--format", "json"])
    assert result.exit_code == 0, result.output
    [hit] = json.loads(result.output)
    assert hit["feed"] == "Le Quotidien"
    assert hit["also_in"] == [
        {
            "feed": "Info Matin",
            "url": outlets.second.url("/afrique/depeche-4821"),
            "title": "Togo : feu vert du Parlement à l'accord avec la Russie",
        }
    ]


def test_the_same_url_under_a_new_guid_adds_no_hit_and_no_fetch(
    pipeline: Pipeline, store: Store, outlets: Outlets
) -> None:
    assert pipeline.poll_feed(outlets.spec_a).new_hits == 1
    outlets.feed_a(["a-1-renamed"])
    report = pipeline.poll_feed(outlets.spec_a)
    assert (report.new_entries, report.new_articles, report.new_hits) == (1, 0, 0)
    assert outlets.fetches(ARTICLE_PATH_A) == 1
    assert len(store.hits()) == 1


@pytest.mark.parametrize(
    "variant",
    [
        ARTICLE_PATH_A + "?from=rss",
        ARTICLE_PATH_A + "?utm_campaign=newsletter&fbclid=IwAR0",
        ARTICLE_PATH_A + "?amp=1",
        "/amp" + ARTICLE_PATH_A,
    ],
)
def test_tracking_and_amp_variants_add_no_hit_and_no_fetch(
    pipeline: Pipeline, store: Store, outlets: Outlets, variant: str
) -> None:
    assert pipeline.poll_feed(outlets.spec_a).new_hits == 1
    outlets.feed_a(["a-2"], link=outlets.first.url(variant))
    report = pipeline.poll_feed(outlets.spec_a)
    assert (report.new_entries, report.new_articles, report.new_hits) == (1, 0, 0)
    assert outlets.fetches(ARTICLE_PATH_A) + outlets.fetches("/amp" + ARTICLE_PATH_A) == 1
    [hit] = store.hits()
    assert hit.also_in == ()


def test_an_amp_page_is_stored_under_its_canonical_url(
    pipeline: Pipeline, store: Store, outlets: Outlets
) -> None:
    page = outlets.first.routes[ARTICLE_PATH_A]
    outlets.first.routes["/amp" + ARTICLE_PATH_A] = page  # the AMP page names its canonical
    outlets.feed_a(["a-1"], link=outlets.first.url("/amp" + ARTICLE_PATH_A))
    assert pipeline.poll_feed(outlets.spec_a).new_hits == 1
    assert store.hits()[0].url == outlets.first.url(ARTICLE_PATH_A)
    assert store.known_article(outlets.first.url(ARTICLE_PATH_A) + "?from=rss") is not None


# --------------------------------------------------------------------------- migration


def test_migration_rekeys_existing_articles_and_keeps_colliding_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    MIGRATIONS.apply(old, stop_before="0005_stories")
    old.execute("INSERT INTO feeds (id, url, title) VALUES (1, 'https://f.example/rss', 'F')")
    seen = "2026-11-30T08:00:00.000000+00:00"
    rows = [  # (id, url, old url_key): articles 1 and 2 are one article under the new key
        (1, "https://news.example/a?utm_source=rss", "https://news.example/a"),
        (2, "https://news.example/a?from=rss", "https://news.example/a?from=rss"),
        (3, "https://news.example/b", "https://news.example/b"),
        (4, None, "entry:1:no-link"),
    ]
    for article_id, url, key in rows:
        old.execute(
            """
            INSERT INTO articles (id, url, url_key, title, text, text_source, first_seen,
                                  first_feed_id) VALUES (?, ?, ?, 'T', 'x', 'page', ?, 1)
            """,
            [article_id, url, key, seen],
        )
        old.execute(
            """
            INSERT INTO entries (feed_id, entry_key, article_id, link, title, first_seen)
            VALUES (1, ?, ?, ?, 'T', ?)
            """,
            [f"e{article_id}", article_id, url, seen],
        )
    old.execute(
        """
        INSERT INTO hits (watchlist, article_id, matched, clauses, snippets, found_at)
        VALUES ('w', 1, '[]', '[]', '[]', ?), ('w', 2, '[]', '[]', '[]', ?)
        """,
        [seen, seen],
    )
    old.conn.commit()
    old.close()
    with Store(path) as store:
        assert len(store.hits()) == 2  # both colliding articles and their hits are kept
        known = store.known_article("http://www.news.example/a/?fbclid=1")
        assert known is not None and known.url == "https://news.example/a"
    conn = sqlite3.connect(path)
    keys = dict(conn.execute("SELECT id, url_key FROM articles").fetchall())
    assert keys == {
        1: "//news.example/a",
        2: "https://news.example/a?from=rss",  # collided: keeps its old key
        3: "//news.example/b",
        4: "entry:1:no-link",
    }
    urls = dict(conn.execute("SELECT id, url FROM articles").fetchall())
    assert urls[2] == "https://news.example/a"  # shown without its tracker
    stories = dict(conn.execute("SELECT id, story_id FROM articles").fetchall())
    assert stories == {1: 1, 2: 2, 3: 3, 4: 4}
    links = conn.execute("SELECT link FROM entries WHERE article_id = 2").fetchone()
    assert links == ("https://news.example/a?from=rss",)  # the entry keeps its original link


# --------------------------------------------------------------------------- store


def record_article(
    store: Store, feed: str, key: str, url: str, text: str, *, now: datetime
) -> PollCounts:
    """One poll of `feed` bringing one article, matched as the pipeline would."""
    title = f"Le Togo et la Russie ({key})"
    entry = Entry(key=key, link=url, title=title, summary="", content="", published=now)
    article = ArticleText(url=clean_url(url), title=entry.title, text=text, source=TextSource.PAGE)
    hits = tuple(
        InlineArticles(WATCHLISTS).process(ArticleJob(entry, feed, "fr", known=article))[1]
    )
    fetched = Fetched(url=feed, status=200, headers={}, content=b"")
    body = NewBody(
        fetched=fetched,
        body_hash=key,
        feed_title=feed,
        entries=1,
        new=(NewArticle(entry, article, hits, signature=signature(text)),),
    )
    spec = FeedSpec(url=feed, name=feed)
    return store.record(decide_update(store.feed_state(feed), spec, body, now))


NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
EDITED_TEXT = "LOMÉ (AFP) — " + "\n".join(WIRE_PARAGRAPHS[:4])


def test_two_store_processes_see_each_others_stories(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    with Store(path) as daemon, Store(path) as poll_command:
        # The second process loads its story index first, while the database is empty...
        other = record_article(
            poll_command, "https://c.example/rss", "c", "https://c.example/9", "x y " * 40, now=NOW
        )
        first = record_article(
            daemon, "https://a.example/rss", "a", "https://a.example/1", WIRE_TEXT, now=NOW
        )
        # ...and reads what the daemon stored since inside its next write.
        copy = record_article(
            poll_command, "https://b.example/rss", "b", "https://b.example/2", EDITED_TEXT, now=NOW
        )
        assert (other.new_hits, first.new_hits, copy.new_hits) == (0, 1, 0)
        [hit] = daemon.hits()
        assert [copy.feed for copy in hit.also_in] == ["https://b.example/rss"]


def test_a_copy_older_than_the_window_is_a_new_story(tmp_path: Path) -> None:
    with Store(tmp_path / "monitor.db") as store:
        record_article(
            store, "https://a.example/rss", "a", "https://a.example/1", WIRE_TEXT, now=NOW
        )
        later = NOW + STORY_WINDOW + timedelta(days=1)
        assert (
            record_article(
                store, "https://b.example/rss", "b", "https://b.example/2", EDITED_TEXT, now=later
            ).new_hits
            == 1
        )
        assert all(hit.also_in == () for hit in store.hits())
    # A fresh start loads only the window, too.
    with Store(tmp_path / "monitor.db") as store:
        even_later = later + STORY_WINDOW + timedelta(days=1)
        counts = record_article(
            store, "https://c.example/rss", "c", "https://c.example/3", WIRE_TEXT, now=even_later
        )
        assert counts.new_hits == 1


def test_a_backfill_gives_a_story_one_hit_per_watchlist(tmp_path: Path) -> None:
    with Store(tmp_path / "monitor.db") as store:
        record_article(
            store, "https://a.example/rss", "a", "https://a.example/1", WIRE_TEXT, now=NOW
        )
        record_article(
            store, "https://b.example/rss", "b", "https://b.example/2", EDITED_TEXT, now=NOW
        )
        backfill = Watchlist(name="Lomé", query=parse_query("Lomé OR Moscou", {}))
        matcher = InlineArticles([backfill])
        found = []
        for article_id, article, feed in store.articles_since(None):
            _, hits, _ = matcher.process(
                ArticleJob(
                    Entry("k", article.url, article.title, "", "", None), feed, "fr", known=article
                )
            )
            found += [(article_id, hit) for hit in hits]
        assert len(found) == 2  # both copies match...
        assert store.add_backfill_hits("Lomé", found, now=NOW, quiet=False) == 1  # ...one hit


def test_a_failed_write_leaves_no_story_behind(tmp_path: Path) -> None:
    with Store(tmp_path / "monitor.db") as store:
        record_article(
            store, "https://z.example/rss", "z", "https://z.example/0", "x y " * 40, now=NOW
        )
        entry = Entry("a", "https://a.example/1", "Le Togo", "", "", NOW)
        article = ArticleText(entry.link, entry.title, WIRE_TEXT, TextSource.PAGE)
        broken = Entry("b", "https://a.example/2", "Le Togo", "", "", NOW)
        no_text = replace(article, url=broken.link, text=None)  # type: ignore[arg-type]  # NOT NULL: the write fails
        body = NewBody(
            fetched=Fetched(url="https://a.example/rss", status=200, headers={}, content=b""),
            body_hash="h",
            feed_title="A",
            entries=2,
            new=(
                NewArticle(entry, article, (), signature=signature(WIRE_TEXT)),
                NewArticle(broken, no_text, ()),
            ),
        )
        spec = FeedSpec(url="https://a.example/rss", name="A")
        with pytest.raises(StorageError):
            store.record(decide_update(store.feed_state(spec.url), spec, body, NOW))
        # The story stored by the failed write is gone from the index too, even once its
        # article id is taken by another article: the copy is a new story.
        record_article(
            store, "https://y.example/rss", "y", "https://y.example/1", "u v " * 40, now=NOW
        )
        counts = record_article(
            store, "https://b.example/rss", "b", "https://b.example/2", EDITED_TEXT, now=NOW
        )
        assert (counts.new_articles, counts.new_hits) == (1, 1)
        assert [hit.also_in for hit in store.hits()] == [()]


def test_the_story_index_gives_the_most_similar_first_and_at_most_limit() -> None:
    index = StoryIndex()
    original = signature(WIRE_TEXT)
    edited = signature(EDITED_TEXT)
    assert original is not None and edited is not None
    for article_id in range(1, 41):  # a story reprinted forty times, every other one edited
        index.add(article_id, original if article_id % 2 else edited)
    every = index.same_story(original)
    assert [match.article_id for match in every[:3]] == [1, 3, 5]  # identical, oldest first
    assert [match.similarity for match in every] == sorted(
        (match.similarity for match in every), reverse=True
    )
    assert len(every) == 40
    assert index.same_story(original, limit=3) == every[:3]


def test_a_copy_finds_its_story_when_its_closest_copies_were_deleted(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    with Store(path) as store:
        # An edited copy begins the story; eleven identical reprints join it.
        for number in range(1, 13):
            record_article(
                store, f"https://{number}.example/rss", "k", f"https://{number}.example/a",
                EDITED_TEXT if number == 1 else WIRE_TEXT, now=NOW,
            )  # fmt: skip
        # Another process deletes ten reprints (more than a lookup reads at once), which
        # this store's story index still holds as the closest copies of the next one.
        with sqlite3.connect(path) as other:
            other.execute("DELETE FROM articles WHERE id BETWEEN 2 AND 11")
        record_article(
            store, "https://13.example/rss", "k", "https://13.example/a", WIRE_TEXT, now=NOW
        )
    conn = sqlite3.connect(path)
    stories = dict(conn.execute("SELECT id, story_id FROM articles").fetchall())
    assert stories == {1: 1, 12: 1, 13: 1}  # still the story the first copy began
