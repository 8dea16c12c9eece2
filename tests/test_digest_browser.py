"""The HTML digest as a phone and a laptop show it: rendered by headless Chromium at
375 and 1,024 px wide, with no horizontal scrolling and every story's title visible.

The check runs inside the page: a copy of the digest gets a script that measures the
layout and posts its findings to a host page, which writes them into its document for
Chromium's --dump-dom. The digest sits in an iframe as wide as the screen tested,
because headless Chromium will not make its window narrower than 500 px. Screenshots are kept in ``test-artifacts/`` (or ``$MONITOR_ARTIFACTS``) for
a person to look at. Skipped, with the reason, where Chromium is not installed
(`.ci/run` installs Debian's `chromium` package).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from monitor.digest import html_part
from tests.test_digest_briefing import (
    NOTICES,
    content_of,
    day_of_hits,
    heavy_day,
    render,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (apt-get install chromium; .ci/run does it)",
)
ARTIFACTS = Path(
    os.environ.get("MONITOR_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts")
)
WIDTHS = (375, 1024)
# Without the network flags Chromium tries to reach Google's services at start, and this
# machine's closed network refuses them many times over.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
PROBE = """
<script>
window.addEventListener("load", () => {
  const titles = JSON.parse(document.getElementById("probe-titles").textContent);
  const width = window.innerWidth;
  const blocks = [...document.querySelectorAll("a, div, li, td, h1, h2, p, blockquote")];
  const result = {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: width,
    wide: blocks.filter(e => e.getBoundingClientRect().right > width + 1)
                .slice(0, 5).map(e => e.outerHTML.slice(0, 120)),
    hidden: [],
  };
  for (const title of titles) {
    // innerText, unlike textContent, leaves out what is not rendered.
    const holder = [...document.querySelectorAll("a, div.t, li")].find(
      e => e.innerText.includes(title));
    if (!holder) { result.hidden.push("missing: " + title); continue; }
    const box = holder.getBoundingClientRect();
    const style = getComputedStyle(holder);
    if (box.width < 1 || box.height < 1 || box.right > width + 1 || box.left < -1
        || !holder.checkVisibility({opacityProperty: true, visibilityProperty: true})
        || style.visibility !== "visible" || style.display === "none"
        || style.color === style.backgroundColor) {
      result.hidden.push(title);
    }
  }
  parent.postMessage(JSON.stringify(result), "*");
});
</script>
"""
HOST = """<!DOCTYPE html>
<html><body style="margin:0">
<iframe src="{page}" style="width:{width}px;height:{height}px;border:0;display:block"></iframe>
<script>
window.addEventListener("message", event => {{
  const out = document.createElement("pre");
  out.id = "probe-result";
  out.textContent = event.data;
  document.body.appendChild(out);
}});
</script>
</body></html>
"""


def host(page: Path, width: int, height: int) -> Path:
    """A page showing `page` in a frame `width` px wide."""
    framed = page.with_name(f"host-{page.name}")
    framed.write_text(HOST.format(page=page.name, width=width, height=height), encoding="utf-8")
    return framed


def chromium(arguments: Sequence[str], profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *arguments],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def probe(html: str, titles: list[str], width: int, tmp_path: Path, name: str) -> dict[str, object]:
    page = tmp_path / f"{name}-{width}.html"
    script = (
        f'<script type="application/json" id="probe-titles">{json.dumps(titles)}</script>' + PROBE
    )
    page.write_text(html.replace("</body>", script + "</body>"), encoding="utf-8")
    window = f"--window-size={max(width, 500)},1200"
    dumped = chromium(
        [window, "--virtual-time-budget=5000", "--dump-dom", host(page, width, 1200).as_uri()],
        tmp_path / "profile",
    )
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', dumped.stdout, re.DOTALL)
    assert found is not None, f"the probe did not run: {dumped.stderr[-2000:]}"
    result: dict[str, object] = json.loads(found.group(1).replace("&quot;", '"'))
    # The screenshot, of the digest as sent (no probe), for a person to look at.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    sent = tmp_path / f"{name}.html"
    sent.write_text(html, encoding="utf-8")
    shot = ARTIFACTS / f"digest-{name}-{width}.png"
    chromium(
        [f"--window-size={width},2400", f"--screenshot={shot}", host(sent, width, 2400).as_uri()],
        tmp_path / "profile",
    )
    assert shot.is_file() and shot.stat().st_size > 0, f"no screenshot at {shot}"
    return result


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("language", ["fr", "en"])
def test_the_digest_fits_the_screen_and_every_title_is_visible(
    width: int, language: str, tmp_path: Path
) -> None:
    hits = day_of_hits()
    html = html_part(render(content_of(*hits, notices=NOTICES), language=language))
    titles = sorted({hit.title for hit in hits})
    result = probe(html, titles, width, tmp_path, f"day-{language}")
    assert result["scrollWidth"] == result["innerWidth"] == width, result["wide"]
    assert result["hidden"] == []


@pytest.mark.parametrize("width", WIDTHS)
def test_a_heavy_day_fits_the_screen_too(width: int, tmp_path: Path) -> None:
    hits = heavy_day()
    html = html_part(render(content_of(*hits, order=()), language="fr"))
    titles = [hit.title for hit in hits if not hit.in_passing][:40]
    result = probe(html, titles, width, tmp_path, "heavy-fr")
    assert result["scrollWidth"] == result["innerWidth"] == width, result["wide"]
    assert result["hidden"] == []
