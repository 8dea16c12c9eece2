"""Same-story detection measured on the shared corpus; used by tests/test_stories.py and
bench/bench_stories.py.

Documents, each with a ground-truth story label:

* ``page``: the complete article text of every ground-truth JSON of ../shared/corpus/articles
  that holds one (``full_text``, and Readability's ``expected_html`` text);
* ``bbc``: every MasakhaNEWS (BBC Afrique) article, test and train files, headline + text;
* ``feed``: the content (else summary) of every entry of every feed of ../shared/corpus/feeds,
  parsed by `monitor.parse`;
* ``extracted``: pages whose URL appears twice in the corpus (two snapshots of one article:
  goose3's CNN Arabic, BusinessWeek and Gizmodo pages, newspaper4k's CNN Arabic), run through
  `monitor.extract`, as the pipeline sees them.

Two documents are the same story when they have the same URL (`url_key`), the same title of
four words or more, or are listed in `KNOWN_SAME_STORY` (found by reading what the detector
merged). Every other pair is two stories.

Built pairs: an article's text republished by two "outlets" with different page templates
(navigation, related links, share buttons, newsletter box, footer), another URL and a tweaked
title, both run through `monitor.extract`; the copy is also edited (``edited``: a dateline, the
last paragraph dropped, straight quotes, a "Lire aussi" line) or cut to its first 60 % of
paragraphs (``truncated``: found because only the first `MAX_WORDS` words are compared).
"""

from __future__ import annotations

import csv
import gzip
import html
import io
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from monitor.extract import extract_page
from monitor.models import ParsedFeed
from monitor.parse import parse_feed
from monitor.stories import (
    StoryIndex,
    signature,
    similarity,
    text_words,
    url_key,
)

MASAKHANEWS = ("masakhanews_fra_test.tsv.gz", "masakhanews_fra_train_50shot.tsv.gz")
DUPLICATE_PAGES = (
    "goose3/test_cnn_arabic",
    "newspaper4k/arabic_article",
    "goose3/test_businessWeek1",
    "goose3/test_businessWeek4",
    "goose3/test_gizmodo1",
    "goose3/test_gizmodo2",
    "goose3/test_gizmodo3",
)
# Same story although neither URL nor title says so, found by reading the merges:
# (document id, document id, why).
KNOWN_SAME_STORY: tuple[tuple[str, str, str], ...] = (
    ("readability/rtl-1", "readability/rtl-3", "the same lorem ipsum text, two RTL test pages"),
)


@dataclass
class Document:
    doc_id: str
    kind: str
    text: str
    url: str | None = None
    title: str = ""


@dataclass
class Clustering:
    """What the detector made of a list of documents, against their labels."""

    documents: int  # with a signature
    unsigned: int  # under MIN_WORDS words
    wrong_merges: list[tuple[str, str, float]] = field(default_factory=list)  # two stories merged
    same_pairs: int = 0  # pairs of signed documents of one story
    found_pairs: int = 0  # of which put in one story

    @property
    def recall(self) -> float:
        return self.found_pairs / self.same_pairs if self.same_pairs else 1.0


# --------------------------------------------------------------------------- corpus


def _title_label(title: str) -> str | None:
    words = text_words(title)
    return "title:" + " ".join(words) if len(words) >= 4 else None


def corpus_documents(root: Path, *, extract: bool = True) -> list[Document]:
    articles = root / "articles"
    documents: list[Document] = []
    for path in sorted(articles.glob("*/*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        text = record.get("text")
        if isinstance(text, str) and text.strip():
            title = str((record.get("metadata") or {}).get("title") or "")
            documents.append(
                Document(f"{path.parent.name}/{path.stem}", "page", text, record.get("url"), title)
            )
    for name in MASAKHANEWS:
        rows = csv.DictReader(
            io.StringIO(
                gzip.decompress((articles / "masakhanews-fra" / name).read_bytes()).decode()
            ),
            delimiter="\t",
        )
        for number, row in enumerate(rows):
            url = f"https://www.bbc.com{row['url']}" if row.get("url") else None
            documents.append(
                Document(
                    f"{name.split('_')[2]}/{number}",
                    "bbc",
                    f"{row['headline']}\n{row['text']}",
                    url,
                    row["headline"],
                )
            )
    for path in sorted((root / "feeds").glob("*/*")):
        if path.name.endswith((".json", ".md")):
            continue
        body = path.read_bytes()
        if path.name.endswith(".gz"):
            body = gzip.decompress(body)
        parsed = parse_feed(body, url=f"https://feeds.example/{path.parent.name}/{path.name}")
        if not isinstance(parsed, ParsedFeed):
            continue
        for number, entry in enumerate(parsed.entries):
            documents.append(
                Document(
                    f"{path.parent.name}/{path.name}#{number}",
                    "feed",
                    entry.content or entry.summary,
                    entry.link,
                    entry.title,
                )
            )
    if extract:
        for name in DUPLICATE_PAGES:
            record = json.loads((articles / f"{name}.json").read_text(encoding="utf-8"))
            page = extract_page(
                gzip.decompress((articles / f"{name}.html.gz").read_bytes()), url=record["url"]
            )
            documents.append(Document(name, "extracted", page.text, record["url"], page.title))
    return documents


def story_labels(documents: Sequence[Document]) -> dict[str, str]:
    """doc id -> a label shared by the documents of one story (union of the rules above)."""
    parent = {document.doc_id: document.doc_id for document in documents}

    def find(doc_id: str) -> str:
        while parent[doc_id] != doc_id:
            parent[doc_id] = parent[parent[doc_id]]
            doc_id = parent[doc_id]
        return doc_id

    first_with: dict[str, str] = {}
    for document in documents:
        marks = [_title_label(document.title)]
        if document.url:
            marks.append("url:" + url_key(document.url))
        for mark in marks:
            if mark is None:
                continue
            if mark in first_with:
                parent[find(document.doc_id)] = find(first_with[mark])
            else:
                first_with[mark] = document.doc_id
    for first, second, _ in KNOWN_SAME_STORY:
        if first in parent and second in parent:
            parent[find(first)] = find(second)
    return {doc_id: find(doc_id) for doc_id in parent}


def cluster(documents: Sequence[Document], labels: dict[str, str]) -> Clustering:
    """Run the documents through a `StoryIndex` in order, as the store does, and score it."""
    index = StoryIndex()
    story_of: dict[str, str] = {}
    signatures: dict[str, bytes] = {}
    numbers: dict[int, str] = {}
    unsigned = 0
    result = Clustering(documents=0, unsigned=0)
    for number, document in enumerate(documents):
        stored = signature(document.text)
        if stored is None:
            unsigned += 1
            continue
        matches = index.same_story(stored)
        if matches:
            match = numbers[matches[0].article_id]
            story_of[document.doc_id] = story_of[match]
            if labels[match] != labels[document.doc_id]:
                result.wrong_merges.append((match, document.doc_id, matches[0].similarity))
        else:
            story_of[document.doc_id] = document.doc_id
        index.add(number, stored)
        numbers[number] = document.doc_id
        signatures[document.doc_id] = stored
    result.documents = len(signatures)
    result.unsigned = unsigned
    by_label: dict[str, list[str]] = {}
    for doc_id in signatures:
        by_label.setdefault(labels[doc_id], []).append(doc_id)
    for members in by_label.values():
        for first, second in combinations(members, 2):
            result.same_pairs += 1
            result.found_pairs += story_of[first] == story_of[second]
    return result


def nearest_other_stories(
    documents: Sequence[Document], labels: dict[str, str], *, floor: float = 0.2, top: int = 5
) -> list[tuple[float, str, str]]:
    """The most similar pairs of two stories (estimated Jaccard over `floor`), highest first;
    every pair is compared (the LSH only finds pairs near the threshold)."""
    signed = [
        (document.doc_id, stored)
        for document in documents
        if (stored := signature(document.text)) is not None
    ]
    matrix = np.stack([np.frombuffer(stored, dtype="<u4") for _, stored in signed])
    found: list[tuple[float, str, str]] = []
    for row in range(1, len(signed)):
        scores = (matrix[:row] == matrix[row]).mean(axis=1)
        for other in np.flatnonzero(scores >= floor):
            first, second = signed[int(other)][0], signed[row][0]
            if labels[first] != labels[second]:
                found.append((float(scores[other]), first, second))
    return sorted(found, reverse=True)[:top]


# --------------------------------------------------------------------------- built pairs

_NAV_A = "".join(
    f'<li><a href="/rubrique/{name}">{name.title()}</a></li>'
    for name in ("politique", "economie", "sport", "culture", "afrique", "monde", "opinions")
)
_RELATED_B = "".join(
    f'<li><a href="/news/{number}">Les plus lus : dossier numéro {number} de la semaine</a></li>'
    for number in range(1, 7)
)


def outlet_a_page(title: str, paragraphs: Sequence[str]) -> bytes:
    body = "".join(f"<p>{html.escape(paragraph)}</p>" for paragraph in paragraphs)
    return f"""<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8">
<title>{html.escape(title)} | Le Quotidien</title></head><body>
<header><a href="/">Le Quotidien</a><nav><ul>{_NAV_A}</ul></nav></header>
<div class="cookie">Nous utilisons des cookies pour améliorer votre expérience. Accepter</div>
<main><article><h1>{html.escape(title)}</h1><p class="byline">Par la rédaction, publié le 3 mars</p>
{body}</article>
<aside><h2>Lire aussi</h2><ul><li><a href="/a/1">Un autre sujet sans rapport</a></li></ul></aside></main>
<footer><p>© Le Quotidien. Tous droits réservés. Mentions légales. Contact.</p></footer>
</body></html>""".encode()


def outlet_b_page(title: str, paragraphs: Sequence[str]) -> bytes:
    body = "\n".join(
        f'<div class="para"><p>{html.escape(paragraph)}</p></div>' for paragraph in paragraphs
    )
    return f"""<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<title>{html.escape(title)} - Info Matin</title>
<meta property="og:title" content="{html.escape(title)}"></head><body>
<div id="top"><div class="logo">Info Matin</div><div class="search">Rechercher</div></div>
<div id="wrap"><div id="content" class="story-body">
<div class="share">Partager sur Facebook | Twitter | WhatsApp</div>
<h1 class="headline">{html.escape(title)}</h1>
{body}
<div class="newsletter">Inscrivez-vous à notre lettre d'information quotidienne</div>
</div><div id="sidebar"><h3>Les plus lus</h3><ul>{_RELATED_B}</ul></div></div>
<div id="foot">Info Matin SARL — publicité — conditions d'utilisation</div></body></html>""".encode()


@dataclass(frozen=True)
class BuiltPair:
    kind: str  # "template", "edited" or "truncated"
    first: str  # extracted text of outlet A's page
    second: str  # extracted text of outlet B's page


def _edited(paragraphs: list[str]) -> list[str]:
    edited = [
        paragraph.replace("’", "'").replace("«\u00a0", '"').replace("\u00a0»", '"')
        for paragraph in paragraphs
    ]
    edited[0] = f"DAKAR (AFP) — {edited[0]}"
    if len(edited) > 3:
        edited = edited[:-1]
        edited.insert(len(edited) // 2, "Lire aussi : notre dossier complet sur la région")
    return edited


def built_pairs(
    documents: Sequence[Document], *, count: int, seed: int = 20261201
) -> list[BuiltPair]:
    """Each of `count` long articles (chosen with `seed`) republished three ways."""
    candidates = [
        document
        for document in documents
        if document.kind in ("bbc", "page") and len(text_words(document.text)) >= 150
    ]
    chosen = random.Random(seed).sample(candidates, min(count, len(candidates)))
    pairs: list[BuiltPair] = []
    for number, document in enumerate(chosen):
        paragraphs = [line for line in document.text.split("\n") if line.strip()]
        if len(paragraphs) < 3:  # MasakhaNEWS keeps a whole article on one line
            sentences = [part.strip() + "." for part in document.text.split(". ") if part.strip()]
            paragraphs = [" ".join(sentences[i : i + 3]) for i in range(0, len(sentences), 3)]
        title = document.title or f"Article {number}"
        first = extract_page(outlet_a_page(title, paragraphs), url=f"https://a.example/{number}")
        versions = {
            "template": paragraphs,
            "edited": _edited(paragraphs),
            "truncated": paragraphs[: max(1, round(len(paragraphs) * 0.6))],
        }
        for kind, version in versions.items():
            second = extract_page(
                outlet_b_page(f"{title} : ce qu'il faut savoir", version),
                url=f"https://b.example/news/{number}-{kind}?from=rss",
            )
            pairs.append(BuiltPair(kind, first.text, second.text))
    return pairs


def built_recall(pairs: Iterable[BuiltPair]) -> dict[str, tuple[int, int, float]]:
    """kind -> (pairs found the same story, pairs with both texts signed, mean similarity)."""
    tallies: dict[str, list[float]] = {}
    found: dict[str, int] = {}
    for pair in pairs:
        first, second = signature(pair.first), signature(pair.second)
        if first is None or second is None:
            continue
        index = StoryIndex()  # through the LSH, as the store finds them
        index.add(0, first)
        tallies.setdefault(pair.kind, []).append(similarity(first, second))
        found[pair.kind] = found.get(pair.kind, 0) + bool(index.same_story(second))
    return {
        kind: (found[kind], len(scores), sum(scores) / len(scores))
        for kind, scores in tallies.items()
    }
