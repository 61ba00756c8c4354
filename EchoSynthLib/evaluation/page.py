"""``report.html``: the evaluation report as a page a person reads. The verdict first, then one table per
section (the synthetic set, the baseline when given and the real reference side by side, with the unit and
the meaning of each number), the figures with captions, and the raw numbers only as a link to
``report.json`` beside the page. Self-contained: inline CSS, the figures embedded, no JavaScript; every text
escaped.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from EchoSynthLib.evaluation.downstream import PAPER_STRUCTURES
from EchoSynthLib.evaluation.summary import Row, Section, sections, shown, structure_name, verdict

RAW = "report.json"
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1150px;margin:0 auto;
padding:0 20px 40px;color:#1d2330;line-height:1.4}
h1{margin:18px 0 2px;font-size:26px}h2{margin:28px 0 6px;font-size:20px;border-bottom:1px solid #dde2ea}
h3{font-size:15px;margin:16px 0 4px}.meta{color:#555;margin:0 0 10px;font-size:14px}
.verdict{border-left:6px solid #8a94a6;background:#f4f6f9;padding:4px 16px 10px;margin:12px 0}
.verdict.beats{border-color:#2e8540;background:#eef8f0}.verdict.loses{border-color:#c0392b;background:#fbefed}
.verdict h2{border:none;margin-top:10px}.headline{font-size:17px;font-weight:600;margin:4px 0 8px}
.verdict li{margin:3px 0}nav{font-size:13px;margin:10px 0;color:#555}nav a{margin-right:10px}
.about{margin:4px 0 8px;font-size:14px;color:#333}.note{font-style:italic;color:#666}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #d5dae3;padding:3px 8px;vertical-align:top;text-align:left}
th{background:#eef1f6;font-weight:600}td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.meaning{color:#444;max-width:430px}td.unit{white-space:nowrap;color:#444}th.group,td.group{font-weight:600}
td.better{background:#dff2e1;font-weight:700}.key{display:inline-block;padding:0 6px;background:#dff2e1;
font-weight:700}figure{margin:14px 0 22px}figure img{max-width:100%;border:1px solid #d5dae3}
figcaption{font-size:13px;color:#333;margin-top:4px;max-width:900px}.warning{color:#a03020;font-weight:600}
"""
FIGURES = {
    "samples.png": (
        "Samples",
        "The first images of each set (rows: real held-out, synthetic{baseline}), with the outlines of their "
        "label maps' LV cavity, myocardium and left atrium where a set has label maps.",
    ),
    "histograms.png": (
        "Grey levels per structure",
        "Normalised grey-level histograms inside each heart structure: real (blue), synthetic "
        "(red){baseline}. Curves that overlap mean matching brightness and contrast.",
    ),
    "embedding.png": (
        "Echo-encoder features in 2D",
        "The images' echo-encoder features projected to two dimensions (PCA; locally linear embedding too "
        "when there are more than 12 images): real (blue), synthetic (red){baseline}. Synthetic points "
        "spread over the real cloud mean realism and variety; a separate cluster means the encoder tells "
        "them apart.",
    ),
    "memorisation.png": (
        "Closest to a training image",
        "The synthetic images nearest to a training image (top, with their cosine similarity in echo "
        "features) above that training image (bottom). A near-identical pair would be a memorised copy.",
    ),
    "downstream.png": (
        "Downstream Dice",
        "Dice on real test images of segmenters trained on real images, synthetic images, both, and real "
        "images with shuffled label maps (the floor), per structure, with 95 % intervals.",
    ),
}
BASELINE_IN_FIGURE = {
    "samples.png": ", baseline",
    "histograms.png": ", baseline (green)",
    "embedding.png": ", baseline (green)",
}


def _e(value: Any) -> str:
    return html.escape(str(value))


def _cells(row: Row, section: Section) -> str:
    better = row.better()
    out = []
    for column in section.columns:
        classes = f"num {column}" + (" better" if better == column else "")
        out.append(f'<td class="{classes}">{_e(row.text(column))}</td>')
    return "".join(out)


def section_table(section: Section) -> str:
    """A section's rows as a table: [structure,] measure, its columns, unit, what it means."""
    grouped = any(r.group for r in section.rows)
    head = (
        ('<th class="group">structure</th>' if grouped else "")
        + '<th class="measure">measure</th>'
        + "".join(f'<th class="{c}">{_e(section.heading(c))}</th>' for c in section.columns)
        + '<th class="unit">unit</th><th class="meaning">what it means</th>'
    )
    body = []
    for index, row in enumerate(section.rows):
        first = index == 0 or row.group != section.rows[index - 1].group
        span = sum(1 for r in section.rows if r.group == row.group)
        group = f'<td class="group" rowspan="{span}">{_e(row.group)}</td>' if grouped and first else ""
        body.append(
            f"<tr>{group}<td>{_e(row.measure)}</td>{_cells(row, section)}"
            f'<td class="unit">{_e(row.unit)}</td><td class="meaning">{_e(row.meaning)}</td></tr>'
        )
    return f'<table class="measures"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _plain_table(head: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    def cell(index: int, value: Any) -> str:
        text = shown(value) if isinstance(value, float | int) and not isinstance(value, bool) else str(value)
        return f'<td class="num">{_e(text)}</td>' if index >= numeric_from else f"<td>{_e(text)}</td>"

    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _verdict(report: dict[str, Any]) -> str:
    found = verdict(report)
    kind = {True: " beats", False: " loses", None: ""}[found["beats_baseline"]]
    points = "".join(f"<li>{_e(p)}</li>" for p in found["points"])
    key = (
        '<p class="about"><span class="key">Bold on green</span> marks, in each row of the tables, the '
        "nearer to real of the synthetic set and the baseline.</p>"
        if "baseline" in report.get("sets", {})
        else ""
    )
    return (
        f'<section id="verdict" class="verdict{kind}"><h2>Verdict</h2>'
        f'<p class="headline">{_e(found["headline"])}</p><ul>{points}</ul>{key}</section>'
    )


def _sets(report: dict[str, Any]) -> str:
    roles = {
        "synthetic": "the set evaluated",
        "baseline": "what the synthetic set should beat (e.g. the simulator on the same label maps)",
        "real": "real held-out images: the target",
        "train": "the generator's training images: the reference row and memorisation",
    }
    order = [name for name in roles if name in report["sets"]]
    rows = [
        [name, roles[name], report["sets"][name]["description"], report["sets"][name]["images"],
         "yes" if report["sets"][name]["labelled"] else "no"]
        for name in order
    ]  # fmt: skip
    table = _plain_table(["set", "role", "images from", "images", "label maps"], rows, numeric_from=3)
    return f'<section id="sets"><h2>Sets</h2>{table}</section>'


def _section(section: Section, extra: str = "") -> str:
    parts = [f'<section id="{_e(section.key)}"><h2>{_e(section.title)}</h2>']
    if section.about:
        parts.append(f'<p class="about">{_e(section.about)}</p>')
    if section.note:
        parts.append(f'<p class="note">{_e(section.note)}</p>')
    if section.rows:
        parts.append(section_table(section))
    return "".join(parts) + extra + "</section>"


def _memorisation_extra(report: dict[str, Any]) -> str:
    found = report.get("memorisation", {})
    rows = [
        [c["synthetic"], c["training"], c["cosine"], c["pixel_correlation"], c["ssim"]]
        for c in found.get("closest", [])
    ]
    parts = []
    if rows:
        head = ["synthetic image", "nearest training image", "cosine (features)", "pixel correlation", "SSIM"]
        parts.append("<h3>The closest pairs</h3>" + _plain_table(head, rows, numeric_from=2))
    flagged = found.get("flagged", [])
    if flagged:
        more = f" and {len(flagged) - 20} more ({RAW})" if len(flagged) > 20 else ""
        parts.append(f'<p class="about">Flagged: {_e(", ".join(flagged[:20]) + more)}.</p>')
    return "".join(parts)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}" if math.isfinite(value) else "n/a"


def _downstream(report: dict[str, Any]) -> str:
    found = report.get("downstream")
    title = '<section id="downstream"><h2>Downstream: segmenters trained on each set</h2>'
    if not isinstance(found, dict):
        return f'{title}<p class="note">{_e(found or "not run")}</p></section>'
    about = (
        f"The same segmenter recipe trained for {found['steps']} steps (seeds {found['seeds']}) on each "
        f"condition, tested on {found['test']['images']} real images the generator never saw "
        f"({found['test']['set']}). Dice in %, mean over the test images with its bootstrap 95 % interval; "
        "higher is better. The shuffled-label control is the floor."
    )
    rows = []
    for name, result in found["conditions"].items():
        cells: list[Any] = [name, result["training_images"]]
        for structure in PAPER_STRUCTURES:
            dice = result["dice"].get(structure)
            cells.append(
                "—"
                if dice is None
                else f"{_percent(dice['mean'])} [{_percent(dice['ci95'][0])}, {_percent(dice['ci95'][1])}]"
            )
        rows.append(cells)
    head = ["trained on", "training images", *(f"Dice %, {structure_name(s)}" for s in PAPER_STRUCTURES)]
    parts = [title, f'<p class="about">{_e(about)}</p>', _plain_table(head, rows)]
    if found.get("warning"):
        parts.append(f'<p class="warning">{_e(found["warning"])}</p>')
    published = found.get("published_dice_percent", {})
    if published:
        rows = [[name, *(values.get(s, "—") for s in PAPER_STRUCTURES)] for name, values in published.items()]
        parts.append(
            "<h3>Published, for comparison (their numbers, CAMUS test split)</h3>"
            + _plain_table(["source", *(f"Dice %, {structure_name(s)}" for s in PAPER_STRUCTURES)], rows)
        )
    return "".join(parts) + "</section>"


def _figures(report: dict[str, Any], folder: Path) -> str:
    baseline = "baseline" in report.get("sets", {})
    parts = ['<section id="figures"><h2>Figures</h2>']
    for name in report.get("figures", []):
        title, caption = FIGURES.get(name, (name, ""))
        caption = caption.format(baseline=BASELINE_IN_FIGURE.get(name, "") if baseline else "")
        data = base64.b64encode((folder / name).read_bytes()).decode()
        parts.append(
            f'<figure id="figure-{_e(Path(name).stem)}">'
            f'<img alt="{_e(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>{_e(title)}.</b> {_e(caption)} ({_e(name)})</figcaption></figure>"
        )
    return "".join(parts) + "</section>"


def _timings(report: dict[str, Any]) -> str:
    seconds = report.get("seconds", {})
    if not seconds:
        return ""
    rows = [[stage, value] for stage, value in seconds.items()]
    rows.append(["total", round(sum(seconds.values()), 2)])
    return f'<section id="time"><h2>Time per stage</h2>{_plain_table(["stage", "seconds"], rows)}</section>'


def html_report(report: dict[str, Any], folder: Path) -> str:
    """The page for ``report`` (as in report.json), its figures read from ``folder`` and embedded."""
    tables = sections(report)
    memorisation = next(s for s in tables if s.key == "memorisation")
    body = [_verdict(report)]
    titles = [("sets", "Sets"), *((s.key, s.title) for s in tables), ("downstream", "Downstream")]
    titles += [("figures", "Figures"), ("raw", "All numbers")]
    body.append("<nav>" + "".join(f'<a href="#{_e(k)}">{_e(t)}</a>' for k, t in titles) + "</nav>")
    body.append(_sets(report))
    body += [_section(s, _memorisation_extra(report) if s is memorisation else "") for s in tables]
    body += [_downstream(report), _figures(report, folder), _timings(report)]
    body.append(
        '<section id="raw"><h2>All numbers</h2><p class="about">Every number of this page, and more (every '
        "flagged image, subset sizes, image counts per structure), is in "
        f'<a href="{RAW}" download>{RAW}</a>, beside this page.</p></section>'
    )
    sets = report.get("sets", {})
    synthetic, real = (sets.get(name, {}).get("description", "?") for name in ("synthetic", "real"))
    meta = f"{synthetic} against {real} · {report.get('created_by', '')} · {report.get('created', '')}"
    header = (
        f'<header><h1>EchoSynth evaluation</h1><p class="meta">{_e(meta)} · raw numbers: '
        f'<a href="{RAW}" download>{RAW}</a></p></header>'
    )
    head = (
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>EchoSynth evaluation: {_e(synthetic)}</title>"
        f"<style>{STYLE}</style>"
    )
    return f'<!DOCTYPE html><html lang="en"><head>{head}</head><body>{header}{"".join(body)}</body></html>\n'
