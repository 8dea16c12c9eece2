"""The digest as a morning briefing: overview, one story once, size budget, health,
reading conditions, both languages (golden files), and the message catalogue."""

from __future__ import annotations

import email
import email.policy
import os
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from monitor.digest import (
    HTML_BUDGET,
    KEPT_IN_FULL,
    build_digest,
    catalogue_path,
    html_part,
    render_message,
    sent_size,
)
from monitor.models import (
    ClaimedDigest,
    DigestContent,
    HealthNotice,
    NoticeKind,
    StoredHit,
    StoryCopy,
)

REPOSITORY = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "data" / "digest"
LOME = ZoneInfo("Africa/Lome")
PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
TOGO = "Togo — coopération militaire"
RUSSIA = "Russie en Afrique"


def hit(
    hit_id: int,
    watchlist: str,
    *,
    article_id: int | None = None,
    title: str = "Le Togo et la Russie signent un accord de coopération militaire",
    url: str | None = "https://www.republicoftogo.com/diplomatie/togo-russie-accord",
    feed: str = "Republic of Togo",
    hours_ago: float = 5,
    relevance: float | None = 0.9,
    in_passing: bool = False,
    snippets: tuple[str, ...] = (
        "Lomé et Moscou ont signé mardi un [[accord]] de [[coopération militaire]].",
    ),
    matched: tuple[str, ...] = ("Togo", "coopération militaire"),
    also_in: tuple[StoryCopy, ...] = (),
    backfilled: bool = False,
) -> StoredHit:
    return StoredHit(
        hit_id=hit_id,
        watchlist=watchlist,
        article_id=hit_id if article_id is None else article_id,
        title=title,
        url=url,
        feed=feed,
        published=NOW - timedelta(hours=hours_ago),
        found_at=NOW - timedelta(hours=hours_ago - 0.5),
        matched=matched,
        snippets=snippets,
        relevance=relevance,
        in_passing=in_passing,
        also_in=also_in,
        backfilled=backfilled,
    )


def content_of(
    *hits: StoredHit,
    order: tuple[str, ...] = (TOGO, RUSSIA),
    notices: tuple[HealthNotice, ...] = (),
    tz: ZoneInfo = LOME,
) -> DigestContent:
    claimed = ClaimedDigest("Matin", "<digest-matin@monitor.local>", hits, NOW, 1)
    return build_digest(
        claimed,
        watchlist_order=order,
        tz=tz,
        now=NOW,
        topics={TOGO: "Accords, formations et ventes d’armes entre le Togo et ses partenaires"},
        covers_from=NOW - timedelta(days=1),
        notices=notices,
    )


def render(
    content: DigestContent,
    *,
    language: str = "en",
    max_full: int = 10,
    tz: ZoneInfo = LOME,
    budget: int = HTML_BUDGET,
) -> EmailMessage:
    message = render_message(
        content,
        sender="veille@example.org",
        recipients=["analyste@example.org"],
        subject="Veille",
        message_id="<digest-matin@monitor.local>",
        tz=tz,
        language=language,
        max_full=max_full,
        budget=budget,
    )
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def plain_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def day_of_hits() -> tuple[StoredHit, ...]:
    """A realistic morning: two watchlists sharing a story, a wire copy, a passing mention."""
    wire = (
        StoryCopy("BBC Afrique", "https://www.bbc.com/afrique/articles/c4g", "Togo-Russie"),
        StoryCopy("Jeune Afrique", "https://www.jeuneafrique.com/1/togo-russie/", "Togo-Russie"),
    )
    return (
        hit(1, TOGO, article_id=10, also_in=wire),
        hit(
            2,
            TOGO,
            article_id=11,
            title="Sahel : la France redéploie ses forces",
            url="https://www.lemonde.fr/afrique/article/2026/11/30/sahel",
            feed="Le Monde Afrique",
            hours_ago=9,
            relevance=0.12,
            in_passing=True,
            snippets=("Plusieurs pays côtiers, dont le [[Togo]], renforcent leur frontière.",),
            matched=("Togo",),
        ),
        hit(3, RUSSIA, article_id=10, relevance=0.8, matched=("Russie",)),
        hit(
            4,
            RUSSIA,
            article_id=12,
            title="Wagner au Mali : ce que l’on sait",
            url="https://www.rfi.fr/fr/afrique/20261130-wagner-mali",
            feed="RFI Afrique",
            hours_ago=12,
            relevance=0.7,
            snippets=("Le groupe [[Wagner]], lié à la [[Russie]], est au Mali depuis 2021.",),
            matched=("Russie", "Wagner"),
        ),
    )


NOTICES = (
    HealthNotice(
        NoticeKind.FAILING,
        "Journal du Togo",
        since=NOW - timedelta(days=3),
        count=14,
        error="the server answered 503 Service Unavailable",
        url="https://journaldutogo.example/feed",
    ),
    HealthNotice(NoticeKind.MOVED, "Togo First", url="https://www.togofirst.com/fr/rss"),
    HealthNotice(NoticeKind.GONE, "Ancien journal", since=NOW - timedelta(days=2)),
    HealthNotice(NoticeKind.SILENT, "Agence lente", since=NOW - timedelta(days=9)),
    HealthNotice(
        NoticeKind.ALERT_FAILED,
        "Urgent Togo → json://hooks.example.org/monitor",
        since=NOW - timedelta(hours=3),
        count=2,
        error="HTTP 500",
    ),
)


# --------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("language", ["en", "fr"])
def test_golden_digest_for_a_fixed_day(language: str) -> None:
    """Both parts, rendered for a fixed day, match the reviewed files in tests/data/digest.
    Set MONITOR_UPDATE_GOLDEN=1 to rewrite them after an intended change, then review the diff."""
    message = render(content_of(*day_of_hits(), notices=NOTICES), language=language)
    rendered = {
        f"digest-{language}.txt": plain_part(message),
        f"digest-{language}.html": html_part(message).replace("\r\n", "\n"),
    }
    for name, text in rendered.items():
        path = GOLDEN / name
        if os.environ.get("MONITOR_UPDATE_GOLDEN"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert text == path.read_text(encoding="utf-8"), f"{name} changed: review and update it"


def test_french_digest_speaks_french_with_french_dates_and_typography() -> None:
    message = render(content_of(*day_of_hits(), notices=NOTICES), language="fr")
    text = plain_part(message)
    assert message["Content-Language"] == "fr"
    assert " ".join(str(message["Subject"]).split()) == (
        "Veille: 3 nouveaux articles dans 2 veilles (+1 en passant) — 1 déc. 2026"
    )
    assert "mardi 1 décembre 2026 · du 30 nov. 06:00 au 1 déc. 06:00 (Africa/Lome, UTC)" in text
    assert "Trouvé : Togo, coopération militaire" in text  # a space before the colon
    assert "Mentionné en passant (1) :" in text
    assert "Journal du Togo : en échec depuis le 28 nov. 06:00 (14 relèves)" in text
    assert '<html lang="fr">' in html_part(message)


# --------------------------------------------------------------------------- layout


def test_overview_lists_each_watchlist_with_counts_and_links_to_its_section() -> None:
    html = html_part(render(content_of(*day_of_hits())))
    rows = re.findall(
        r'<tr><td><a href="#(w\d)">([^<]+)</a></td><td class="n">(\d+)</td>'
        r'<td class="n">(\d+)</td></tr>',
        html,
    )
    assert rows == [("w1", TOGO, "1", "1"), ("w2", RUSSIA, "2", "0")]
    for anchor, name, _, _ in rows:
        assert f'<h2 id="{anchor}">{name}</h2>' in html
    assert html.index("<table>") < html.index('<h2 id="w1">')


def test_the_in_passing_column_only_when_a_watchlist_has_passing_mentions() -> None:
    main_only = (hit(1, TOGO), hit(2, RUSSIA, article_id=2, url="https://example.org/b"))
    html = html_part(render(content_of(*main_only)))
    assert "In passing" not in html
    assert re.findall(r'<tr><td><a href="#w\d">[^<]+</a></td><td class="n">(\d+)</td></tr>', html)
    assert "In passing" in html_part(render(content_of(*day_of_hits())))


def test_a_first_digest_of_hits_found_just_now_says_until_when_not_a_period_of_nothing() -> None:
    claimed = ClaimedDigest("Matin", "<m@monitor.local>", (hit(1, TOGO, hours_ago=0.5),), NOW, 1)
    content = build_digest(claimed, watchlist_order=(TOGO,), tz=LOME, now=NOW)
    text = plain_part(render(content))
    assert "· until 1 Dec 06:00 (Africa/Lome, UTC)" in text  # not "from 06:00 to 06:00"
    assert " to 1 Dec" not in text


def test_a_story_in_several_watchlists_is_shown_in_full_once() -> None:
    message = render(content_of(*day_of_hits()))
    html, text = html_part(message), plain_part(message)
    title = "Le Togo et la Russie signent un accord de coopération militaire"
    assert text.count(f"* {title}") == 1  # in full once
    assert text.index(f"* {title}") < text.index(f"== {RUSSIA} ==")  # under the first
    reference = text[text.index(f"== {RUSSIA} ==") :]
    assert f"- {title} — Republic of Togo" in reference
    assert f"in full under {TOGO}" in reference
    assert html.count('<div class="s" id="w1-1">') == 1
    assert '<li id="w1-1">' in html  # the reference links to the story in full


def test_other_outlets_of_the_same_story_are_named_and_linked() -> None:
    html = html_part(render(content_of(*day_of_hits())))
    assert (
        'Also in: <a href="https://www.bbc.com/afrique/articles/c4g">BBC Afrique</a>, '
        '<a href="https://www.jeuneafrique.com/1/togo-russie/">Jeune Afrique</a>'
    ) in html
    many = tuple(StoryCopy(f"Outlet {n}", f"https://o{n}.example/a", "T") for n in range(8))
    text = plain_part(render(content_of(hit(1, TOGO, also_in=many))))
    assert "Outlet 4 <https://o4.example/a> and 3 more" in text
    assert "Outlet 5" not in text


def test_stories_past_max_full_are_one_line_each_in_relevance_order() -> None:
    hits = [
        hit(n, TOGO, title=f"Story {n:02d}", url=f"https://e.example/{n}", relevance=n / 100)
        for n in range(1, 13)
    ]
    message = render(content_of(*hits), max_full=10)
    text = plain_part(message)
    assert [line for line in text.splitlines() if line.startswith("* Story")] == [
        f"* Story {n:02d}" for n in range(12, 2, -1)
    ]
    assert "2 more stories:" in text
    assert text.index("- Story 02") < text.index("- Story 01")
    assert html_part(message).count('<div class="s"') == 10


def test_health_section_only_when_something_is_wrong() -> None:
    assert "Sources' health" not in plain_part(render(content_of(*day_of_hits())))
    message = render(content_of(*day_of_hits(), notices=NOTICES))
    text = plain_part(message)
    section = text[text.index("== Sources' health ==") : text.index(f"== {TOGO} ==")]
    assert (
        "- Journal du Togo: failing since 28 Nov 06:00 (14 polls): "
        "the server answered 503 Service Unavailable"
    ) in section
    assert "Togo First: moved to https://www.togofirst.com/fr/rss" in section
    assert "Ancien journal: gone since 29 Nov 06:00" in section
    assert "Agence lente: no new entry since 22 Nov 06:00" in section
    assert "2 alerts not delivered since 1 Dec 03:00: HTTP 500" in section
    html = html_part(message)
    assert '<a href="https://journaldutogo.example/feed">Journal du Togo</a>' in html


def test_reading_conditions_viewport_language_dark_mode_zone_no_remote_resources() -> None:
    message = render(content_of(*day_of_hits()), tz=PARIS)
    html = html_part(message)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert '<html lang="en">' in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "@media (prefers-color-scheme:dark)" in html
    assert "max-width:600px" in html
    assert "(Europe/Paris, UTC+1)" in html
    assert not re.search(r"\b(src|srcset|background)=", html)  # nothing fetched on opening
    assert "url(" not in html and "@import" not in html


# --------------------------------------------------------------------------- size


def heavy_day(hits: int = 200, watchlists: int = 78) -> tuple[StoredHit, ...]:
    """A day as large as the one that was clipped: long titles, URLs and snippets."""
    sentence = (
        "Le ministre a confirmé que l’[[accord]] de [[coopération militaire]] couvrira la "
        "formation, le renseignement et la logistique, selon un communiqué publié à Lomé "
        "après une réunion avec les partenaires régionaux et les bailleurs internationaux "
        "qui suivent de près la situation sécuritaire dans le nord du pays."
    )
    return tuple(
        hit(
            n,
            f"Veille {n % watchlists:02d} — sécurité régionale",
            title=f"Article {n} : une dépêche au titre assez long sur la coopération régionale",
            url=f"https://www.example{n % 9}.com/afrique/2026/11/30/depeche-{n}-cooperation"
            "-militaire-regionale-un-titre-long?utm_source=rss&utm_medium=feed",
            feed=f"Agence {n % 13}",
            relevance=(n % 10) / 10,
            in_passing=n % 5 == 0,
            snippets=(sentence, sentence.upper(), sentence),
            also_in=(StoryCopy("Copie", f"https://copie.example/{n}", "t"),) if n % 7 else (),
        )
        for n in range(1, hits + 1)
    )


@pytest.mark.parametrize("language", ["en", "fr"])
def test_a_day_of_200_hits_stays_under_the_budget_and_loses_no_story(language: str) -> None:
    hits = heavy_day()
    message = render(content_of(*hits, order=()), language=language)
    assert sent_size(message) <= HTML_BUDGET
    html = html_part(message)
    for one in hits:  # every story is still there, in full or on one line
        if not one.in_passing:
            assert f"Article {one.hit_id} :" in html
    # Passing mentions go first when space runs out: listed, or counted with the command.
    listed = sum(f"Article {one.hit_id} :" in html for one in hits if one.in_passing)
    counted = sum(
        int(number) for number in re.findall(r"(\d+) (?:more not listed|autres? non listés?)", html)
    )
    assert listed + counted == sum(one.in_passing for one in hits)


def test_a_huge_day_is_cut_to_counted_lines_with_the_command_that_lists_them() -> None:
    message = render(content_of(*heavy_day(hits=1200, watchlists=30), order=()))
    assert sent_size(message) <= HTML_BUDGET
    # The plain part follows the same layout: the whole message stays small (no 552).
    assert len(message.as_bytes()) < 2.5 * HTML_BUDGET
    text = plain_part(message)
    assert "more not listed here, to keep this message short: monitor hits --watchlist" in text
    assert "'Veille 01 — sécurité régionale'" in text  # quoted for a shell
    sections = {part.split(" ==", 1)[0]: part for part in text.split("\n== ")[1:] if " ==" in part}
    # Each watchlist still opens with its best stories in full, the rest counted...
    veille_01 = sections["Veille 01 — sécurité régionale"]
    assert veille_01.count("\n* Article ") == KEPT_IN_FULL
    listed = veille_01.count("\n- Article ")
    counted = int(re.search(r"(\d+) more not listed", veille_01).group(1))  # type: ignore[union-attr]
    assert KEPT_IN_FULL + listed + counted == 40
    # ... and a watchlist of passing mentions only counts them: none silently dropped.
    assert "40 more not listed here" in sections["Veille 00 — sécurité régionale"]


def test_a_small_budget_first_drops_sentences_then_stories_in_full() -> None:
    hits = [hit(n, TOGO, title=f"Story {n}", snippets=("a [[b]] c",) * 3) for n in range(1, 6)]
    roomy = plain_part(render(content_of(*hits)))
    assert roomy.count("  > a *b* c") == 15
    full_size = sent_size(render(content_of(*hits)))
    tighter = plain_part(render(content_of(*hits), budget=full_size - 200))
    assert tighter.count("  > a *b* c") == 5  # one sentence per story
    assert tighter.count("* Story") == 5


# --------------------------------------------------------------------------- catalogue


def test_every_word_of_the_digest_is_translated_in_french() -> None:
    """Run scripts/catalogue.sh after changing the digest's words, then translate."""
    method_map = [
        ("monitor/digest.py", "python"),
        ("monitor/health.py", "python"),
        ("monitor/templates/**.j2", "jinja2"),
    ]
    options = {"monitor/templates/**.j2": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    used = {
        message if isinstance(message, str) else message[0]
        for _, _, message, _, _ in extract_from_dir(
            str(REPOSITORY), method_map, options, keywords=keywords
        )
    }
    with open(catalogue_path("fr"), "rb") as source:
        catalogue = read_po(source, locale="fr")
    translated = {
        message.id if isinstance(message.id, str) else message.id[0]: message
        for message in catalogue
        if message.id
    }
    assert used - translated.keys() == set(), "words missing from the French catalogue"
    for key in used:
        message = translated[key]
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings) and not message.fuzzy, f"untranslated: {key!r}"
        for string in strings:  # the same placeholders, or % formatting breaks at send time
            assert set(re.findall(r"%\(\w+\)[sd]", str(string))) <= set(
                re.findall(r"%\(\w+\)[sd]", str(key) + str(message.id))
            )
