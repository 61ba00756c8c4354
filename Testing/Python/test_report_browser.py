"""The evaluation report in a real browser: headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it)
renders the report.html of a tiny evaluation with a baseline. The rendered DOM has the verdict first, a
table per section with the synthetic, baseline and real columns, figures with captions, a link to
report.json and no raw JSON; a screenshot of the page is taken (docs/EVALUATION_REPORT.md shows one: set
ECHOSYNTH_REPORT_SCREENSHOT=PATH to keep a copy, reduced to 256 colours). Skipped, saying why, where
Chromium is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from test_evaluate import blurred, encoder, eval_cache, evaluate_with_baseline, simulated  # noqa: F401 (fixtures)

CHROMIUM = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
# As root, without a display or a network: no sandbox, no GPU, none of the background connections.
FLAGS = (
    "--headless",
    "--disable-gpu",
    "--no-sandbox",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip(
            "chromium is not installed (Debian: apt-get install chromium; .ci/run installs it), so the "
            "report page is not checked in a browser"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def report_folder(eval_cache, encoder, simulated, blurred, tmp_path_factory):  # noqa: F811 (fixtures)
    out = tmp_path_factory.mktemp("browser") / "report"
    evaluate_with_baseline(eval_cache, encoder, simulated, blurred, out)
    return out


def _chromium(browser: str, profile: Path, *arguments: str) -> str:
    """Run Chromium headless with a fresh profile; its standard output."""
    done = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *arguments],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: _Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[_Node] = []
        self.text: list[str] = []

    def all(self, tag: str) -> list[_Node]:
        found = [c for c in self.children if c.tag == tag]
        return found + [n for c in self.children for n in c.all(tag)]

    def words(self) -> str:
        return " ".join(" ".join(self.text + [c.words() for c in self.children]).split())

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


class _Tree(HTMLParser):
    """The rendered DOM as a tree of _Node (void elements closed at once)."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input", "source", "col", "area", "base", "wbr"})

    def __init__(self, text: str):
        super().__init__()
        self.root = self.here = _Node("document", {}, None)
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        node = _Node(tag, dict(attrs), self.here)
        self.here.children.append(node)
        if tag not in self.VOID:
            self.here = node

    def handle_endtag(self, tag):
        node = self.here
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.here = node.parent

    def handle_data(self, data):
        self.here.text.append(data)


def test_the_report_page_renders_in_chromium_verdict_first(browser, report_folder, tmp_path):
    page = report_folder / "report.html"
    dom = _chromium(browser, tmp_path / "profile", "--dump-dom", page.as_uri())
    body = _Tree(dom).root.all("body")[0]
    sections = [s for s in body.children if s.tag == "section"]
    ids = [s.attrs.get("id") for s in sections]
    assert ids[0] == "verdict", ids
    verdict = sections[0]
    assert verdict.all("p")[0].words().startswith("Beats the baseline"), verdict.words()
    assert "Memorisation:" in verdict.words() and "How near real:" in verdict.words()
    for key in (
        "sets",
        "distribution-echo",
        "diversity",
        "spectrum",
        "structures",
        "memorisation",
        "figures",
    ):
        assert key in ids, (key, ids)
    by_id = dict(zip(ids, sections, strict=True))
    for key in ("distribution-echo", "diversity", "spectrum", "structures"):
        table = by_id[key].all("table")[0]
        head = [th.classes() for th in table.all("th")]
        for column in ("synthetic", "baseline", "real", "unit", "meaning"):
            assert any(column in c for c in head), (key, column, head)
        rows = table.all("tbody")[0].all("tr")
        assert rows and all(len(r.all("td")) >= 5 for r in rows), key
        assert all(r.all("td")[-1].words() for r in rows), key  # what each number means
    # the measures: numbers in the synthetic and baseline columns, the nearer one marked
    echo = by_id["distribution-echo"].all("table")[0]
    cells = [td for td in echo.all("td") if {"synthetic", "baseline"} & td.classes()]
    assert all(any(ch.isdigit() for ch in td.words()) for td in cells)
    assert any("better" in td.classes() for td in cells)
    figures = by_id["figures"].all("figure")
    names = [f.all("img")[0].attrs["alt"] for f in figures]
    assert {"samples.png", "histograms.png", "embedding.png", "memorisation.png"} <= set(names)
    for figure in figures:
        assert figure.all("img")[0].attrs["src"].startswith("data:image/png;base64,")
        caption = figure.all("figcaption")
        assert caption and len(caption[0].words()) > 40, figure.attrs
    links = [a.attrs.get("href") for a in body.all("a")]
    assert "report.json" in links and (report_folder / "report.json").is_file()
    assert not body.all("pre") and not body.all("script") and not body.all("code")
    assert '"frechet_distance"' not in body.words() and '{"' not in body.words()  # no raw JSON anywhere


def test_a_screenshot_of_the_report_page_shows_it(browser, report_folder, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    page = (report_folder / "report.html").as_uri()
    _chromium(browser, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,2000", page)
    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        grey = np.asarray(image.convert("L"))
    assert grey.std() > 10 and (grey < 100).mean() > 0.005  # text and tables, not a blank page
    assert (grey > 240).mean() > 0.3  # a page, not a rendering failure's dark screen
    keep = os.environ.get("ECHOSYNTH_REPORT_SCREENSHOT")
    if keep:
        with Image.open(shot) as image:
            image.convert("RGB").quantize(colors=256).save(keep, optimize=True)
