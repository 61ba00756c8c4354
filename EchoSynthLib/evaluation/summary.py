"""What a report says, read off ``report.json``: the verdict (does the synthetic set beat the baseline, how
near real is it, how much of it sits on training images), one table per section with the synthetic set,
the baseline and the real reference side by side (unit and meaning of each number), and the short table
``echosynth evaluate`` prints at the end. The HTML page (``evaluation.page``) and the terminal read the
same rows, so they never disagree; any report.json (older ones too) can be read again.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any

# A cell: a number, a number with its spread ((value, spread), shown "value ± spread"), a text, or nothing.
Cell = float | int | tuple[float, float] | str | None

COLUMNS = ("synthetic", "baseline", "real")
STRUCTURE_NAMES = {
    "lv_cavity": "LV cavity",
    "lv_myocardium": "LV myocardium",
    "left_atrium": "left atrium",
    "lv_endo": "LV endocardium",
    "lv_epi": "LV epicardium",
    "la": "left atrium (LA)",
}
# Near real: the synthetic set's Fréchet distance in echo features within this many times the distance
# between two real sets (held-out and training); "some way from real" up to FAR times.
NEAR, FAR = 1.5, 3.0
# The memorisation threshold is the 95th percentile of real held-out images in each of two measures, so
# new images are flagged up to about 10 % of the time.
NEW_IMAGES_FLAGGED = 0.10


def structure_name(key: str) -> str:
    return STRUCTURE_NAMES.get(key, key.replace("_", " "))


def number(cell: Cell) -> float | None:
    """The number a cell compares by (a spread's value); None for text, nothing or NaN."""
    value = cell[0] if isinstance(cell, tuple) else cell
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def shown(cell: Cell, percent: bool = False) -> str:
    """A cell as text: 4 significant digits, a spread with 2, '—' for nothing, 'n/a' for NaN."""
    if cell is None:
        return "—"
    if isinstance(cell, tuple):
        return f"{shown(cell[0])} ± {cell[1]:.2g}" if number(cell[1]) is not None else shown(cell[0])
    if isinstance(cell, bool | str):
        return str(cell)
    if isinstance(cell, float) and not math.isfinite(cell):
        return "n/a"
    if percent:
        return f"{100 * cell:.1f} %"
    return f"{cell:.4g}" if isinstance(cell, float) else str(cell)


@dataclass(frozen=True)
class Row:
    """One measure: its value for the synthetic set, the baseline and the real reference, its unit, what
    it means (one line), and its goal: 'lower' or 'higher' is better, 'near' the real value is better, ''
    no direction. ``group``: a heading the row belongs to (a structure), shown once for its rows."""

    measure: str
    unit: str
    meaning: str
    synthetic: Cell = None
    baseline: Cell = None
    real: Cell = None
    goal: str = ""
    group: str = ""
    percent: bool = False

    def value(self, column: str) -> Cell:
        return getattr(self, column)

    def text(self, column: str) -> str:
        return shown(self.value(column), self.percent)

    def better(self) -> str | None:
        """'synthetic' or 'baseline', whichever is nearer the goal; None without both or on a tie."""
        synthetic, baseline, real = (number(self.value(c)) for c in COLUMNS)
        if synthetic is None or baseline is None or synthetic == baseline:
            return None
        if self.goal == "lower":
            return "synthetic" if synthetic < baseline else "baseline"
        if self.goal == "higher":
            return "synthetic" if synthetic > baseline else "baseline"
        if self.goal == "near" and real is not None:
            gaps = abs(synthetic - real), abs(baseline - real)
            return None if gaps[0] == gaps[1] else "synthetic" if gaps[0] < gaps[1] else "baseline"
        return None


@dataclass(frozen=True)
class Section:
    """A part of the report: a title, one paragraph on what it measures and what its columns are, its
    rows, the columns it fills (of ``COLUMNS``), their headings, and a note (why it was not computed)."""

    key: str
    title: str
    about: str
    rows: list[Row] = field(default_factory=list)
    columns: tuple[str, ...] = COLUMNS
    headings: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def heading(self, column: str) -> str:
        return self.headings.get(
            column, {"synthetic": "synthetic", "baseline": "baseline", "real": "real"}[column]
        )


def _has_baseline(report: dict[str, Any]) -> bool:
    return "baseline" in report.get("sets", {})


def _columns(report: dict[str, Any], *wanted: str) -> tuple[str, ...]:
    return tuple(c for c in wanted if c != "baseline" or _has_baseline(report))


def _views(found: dict[str, Any]) -> list[str]:
    return list(found)


def _kid(values: dict[str, Any] | None) -> Cell:
    return None if values is None else (values["kid"]["mean"], values["kid"]["standard_error"])


DISTRIBUTION_MEASURES = (
    (
        "Fréchet distance",
        "feature units²",
        "distance between Gaussians fitted to the two sets' features; lower is nearer real",
        "lower",
    ),
    (
        "KID",
        "MMD²",
        "kernel distance (unbiased, mean ± standard error over random subsets); about 0 for one distribution",
        "lower",
    ),
    (
        "precision",
        "share 0–1",
        "share of the images inside the real images' feature manifold: realism",
        "higher",
    ),
    (
        "recall",
        "share 0–1",
        "share of the real images inside the images' feature manifold: variety",
        "higher",
    ),
    (
        "density",
        "ratio",
        "real neighbourhoods holding each image, on average (about 1 for one distribution)",
        "near",
    ),
    ("coverage", "share 0–1", "share of the real images with an image in their neighbourhood", "higher"),
)


def _distribution_value(values: dict[str, Any] | None, measure: str) -> Cell:
    if values is None:
        return None
    if measure == "Fréchet distance":
        return values["frechet_distance"]
    if measure == "KID":
        return _kid(values)
    return values.get(measure)


def distribution_sections(report: dict[str, Any]) -> list[Section]:
    """One section per feature space: synthetic vs real, baseline vs real, and the reference, real held-out
    vs the training images (two real sets: what 'as near as real' looks like)."""
    sections = []
    for key, space in report.get("feature_spaces", {}).items():
        title = f"Distance to real: {key} features"
        if isinstance(space, str):
            sections.append(Section(f"distribution-{key}", title, "", columns=(), note=space))
            continue
        views = _views(space["synthetic_vs_real"])
        rows = []
        for view in views:
            for measure, unit, meaning, goal in DISTRIBUTION_MEASURES:
                rows.append(
                    Row(
                        measure if len(views) == 1 else f"{measure} ({view})",
                        unit,
                        meaning,
                        _distribution_value(space["synthetic_vs_real"].get(view), measure),
                        _distribution_value(space.get("baseline_vs_real", {}).get(view), measure),
                        _distribution_value(space["reference_real_vs_train"].get(view), measure),
                        goal,
                    )
                )
        about = (
            f"Each set's images against the real held-out images in the feature space of the "
            f"{space['description']}. The real column is the reference: the real held-out images against "
            "the training images, two real sets, so a synthetic set as near as that is as near as real gets."
            + (" Volumes: on slices along each axis." if len(views) > 1 else "")
        )
        sections.append(
            Section(
                f"distribution-{key}",
                title,
                about,
                rows,
                _columns(report, *COLUMNS),
                {
                    "synthetic": "synthetic vs real",
                    "baseline": "baseline vs real",
                    "real": "real held-out vs train (reference)",
                },
            )
        )
    return sections


def diversity_section(report: dict[str, Any]) -> Section:
    found = report.get("diversity_ms_ssim", {})

    def value(name: str) -> Cell:
        return found[name]["ms_ssim"] if name in found else None

    pairs = next((v["pairs"] for v in found.values()), 0)
    row = Row(
        "MS-SSIM between images",
        "0–1",
        f"mean similarity of {pairs} random pairs of its images; lower is more diverse, near real is best",
        value("synthetic"),
        value("baseline"),
        value("real"),
        "near",
    )
    about = (
        "How different a set's images are from each other (multi-scale SSIM of random pairs; volumes: "
        "middle slices). A generator that repeats itself scores higher than the real images."
    )
    return Section(
        "diversity", "Diversity", about, [row], _columns(report, *COLUMNS), {"real": "real held-out"}
    )


def spectrum_section(report: dict[str, Any]) -> Section:
    found = report.get("spectrum_distance", {})
    row = Row(
        "power spectrum distance",
        "decades (log₁₀ power)",
        "RMS difference of the log radial power spectra from the real held-out images; lower is nearer",
        found.get("synthetic_vs_real"),
        found.get("baseline_vs_real"),
        found.get("reference_train_vs_real"),
        "lower",
    )
    about = (
        "Texture and sharpness: how each set's power is spread over spatial frequencies, against the real "
        "held-out images. The real column is the training images against them (the reference)."
    )
    headings = {
        "synthetic": "synthetic vs real",
        "baseline": "baseline vs real",
        "real": "real train vs real",
    }
    return Section("spectrum", "Power spectrum", about, [row], _columns(report, *COLUMNS), headings)


STRUCTURE_MEASURES = (
    ("mean", "grey mean", "grey level 0–1", "mean displayed intensity inside the structure"),
    ("std", "grey standard deviation", "grey level 0–1", "spread of the intensities inside the structure"),
    ("p5", "grey 5th percentile", "grey level 0–1", "dark end of the structure's intensities"),
    ("median", "grey median", "grey level 0–1", "middle of the structure's intensities"),
    ("p95", "grey 95th percentile", "grey level 0–1", "bright end of the structure's intensities"),
    ("snr", "SNR", "ratio", "mean / standard deviation of the intensities (speckle contrast)"),
    ("speckle_axial_px", "speckle size, axial", "pixels", "autocorrelation width at half maximum along rows"),
    (
        "speckle_lateral_px",
        "speckle size, lateral",
        "pixels",
        "autocorrelation width at half maximum along columns",
    ),
)


def structures_section(report: dict[str, Any]) -> Section:
    found = report.get("structures", {})
    names = [s for s in found.get("real", {})]
    for other in ("synthetic", "baseline"):
        names += [s for s in found.get(other, {}) if s not in names]
    rows = [
        Row(
            label,
            unit,
            meaning,
            *(found.get(column, {}).get(structure, {}).get(key) for column in COLUMNS),
            goal="near",
            group=structure_name(structure),
        )
        for structure in names
        for key, label, unit, meaning in STRUCTURE_MEASURES
    ]
    about = (
        "Grey levels and speckle inside each heart structure of the label maps (images where the structure "
        "has at least 50 pixels; volumes: middle slices). Nearer the real value is better."
    )
    note = "" if "synthetic" in found else "the synthetic set has no label maps: nothing to measure it in"
    return Section(
        "structures",
        "Grey levels and speckle per structure",
        about,
        rows,
        _columns(report, *COLUMNS),
        note=note,
    )


def adherence_section(report: dict[str, Any]) -> Section:
    found = report.get("adherence")
    title = "Label adherence"
    if not isinstance(found, dict):
        return Section("adherence", title, "", columns=(), note=str(found or "not computed"))

    def dice(column: str, structure: str) -> Cell:
        values = found.get(column, {}).get(structure)
        return None if values is None else (values["mean"], values["std"])

    names = list(found.get("real", {})) or list(found.get("synthetic", {}))
    rows = [
        Row(
            f"Dice, {structure_name(s)}",
            "0–1",
            "overlap of the segmenter's prediction on each image with its label map (mean ± SD); higher",
            dice("synthetic", s),
            dice("baseline", s),
            dice("real", s),
            "higher",
        )
        for s in names
    ]
    about = (
        f"Does each image show the anatomy of the label map it was made from? The segmenter "
        f"'{found.get('segmenter', '')}' segments every image; its prediction is compared with the map. The "
        "real column: the same segmenter on the real held-out images and their manual labels."
    )
    return Section("adherence", title, about, rows, _columns(report, *COLUMNS))


def paired_section(report: dict[str, Any]) -> Section | None:
    found = report.get("paired")
    if not isinstance(found, dict):
        return None
    rows = [
        Row(
            "SSIM",
            "0–1",
            "structural similarity to the source image; higher keeps more",
            found["ssim"],
            goal="higher",
        ),
        Row(
            "PSNR",
            "dB",
            "peak signal-to-noise ratio against the source image; higher",
            found["psnr_db"],
            goal="higher",
        ),
        Row(
            "MSE",
            "(grey in [-1, 1])²",
            "mean squared difference from the source image; lower",
            found["mse"],
            goal="lower",
        ),
    ]
    about = (
        "Translated images against the images they were made from (--paired-with, matched by name): how "
        "much of the source each keeps."
    )
    headings = {"synthetic": "synthetic vs its sources"}
    return Section("paired", "Similarity to the source images", about, rows, ("synthetic",), headings)


def memorisation_section(report: dict[str, Any]) -> Section:
    found = report.get("memorisation", {})
    flagged = found.get("flagged", [])
    images = report.get("sets", {}).get("synthetic", {}).get("images")
    rows = [
        Row(
            "share above the threshold",
            "% of the images",
            f"images as close to a training image as the closest 5 % of real held-out images (new images: up "
            f"to about {100 * NEW_IMAGES_FLAGGED:.0f} %); lower",
            found.get("share_above"),
            goal="lower",
            percent=True,
        ),
        Row("images flagged", "images", f"of {images} synthetic images", len(flagged)),
        Row(
            "threshold, features",
            "cosine",
            "95th percentile of real held-out images' similarity to training images, in "
            + str(found.get("feature_space")),
            found.get("threshold_cosine"),
        ),
        Row(
            "threshold, pixels",
            "correlation",
            "95th percentile of real held-out images' fine-detail correlation (shifts up to 2 px, mirror)",
            found.get("threshold_pixel_correlation"),
        ),
    ]
    about = (
        "Is a synthetic image a copy of a training image? Rule: "
        + str(found.get("rule", ""))
        + ". The closest pairs are listed below and shown in the memorisation figure."
    )
    return Section("memorisation", "Memorisation", about, rows, ("synthetic",))


def sections(report: dict[str, Any]) -> list[Section]:
    """Every table section of the report, in the page's order (downstream has its own table)."""
    found = [
        *distribution_sections(report),
        diversity_section(report),
        spectrum_section(report),
        structures_section(report),
        adherence_section(report),
        paired_section(report),
        memorisation_section(report),
    ]
    return [s for s in found if s is not None]


def _main_distance(report: dict[str, Any]) -> dict[str, float] | None:
    """Echo-feature Fréchet distances (mean over views): synthetic, baseline (when given), reference."""
    echo = report.get("feature_spaces", {}).get("echo")
    if not isinstance(echo, dict):
        return None
    out = {}
    for name, key in (
        ("synthetic", "synthetic_vs_real"),
        ("baseline", "baseline_vs_real"),
        ("reference", "reference_real_vs_train"),
    ):
        if key in echo:
            values = [v["frechet_distance"] for v in echo[key].values()]
            out[name] = float(sum(values) / len(values))
    return out


def _downstream_dice(report: dict[str, Any], condition: str) -> float | None:
    found = report.get("downstream")
    if not isinstance(found, dict) or condition not in found.get("conditions", {}):
        return None
    dice = found["conditions"][condition]["dice"]
    values = [dice[s]["mean"] for s in ("lv_endo", "lv_epi", "la") if s in dice]
    values = [v for v in values if math.isfinite(v)]
    return sum(values) / len(values) if values else None


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """The report in a few sentences: the headline (does the set beat the baseline on the main measure, the
    echo-feature Fréchet distance), how many measures it is nearer real on than the baseline, how near real
    it is, its memorisation share, and (when run) the downstream Dice and the paired similarity."""
    distance = _main_distance(report)
    baseline = report.get("sets", {}).get("baseline")
    out: dict[str, Any] = {"beats_baseline": None, "points": []}
    points: list[str] = out["points"]
    if distance is not None:
        out["frechet_distance"] = distance
    if baseline is not None and distance is not None and "baseline" in distance:
        beats = distance["synthetic"] < distance["baseline"]
        out["beats_baseline"] = beats
        out["headline"] = (
            f"{'Beats' if beats else 'Does not beat'} the baseline: Fréchet distance to real in echo "
            f"features {shown(distance['synthetic'])} against the baseline's {shown(distance['baseline'])} "
            f"(two real sets: {shown(distance['reference'])}; lower is nearer real)."
        )
        decided = [r.better() for s in sections(report) for r in s.rows]
        wins, total = decided.count("synthetic"), len([d for d in decided if d is not None])
        out["nearer_real_than_baseline"] = {"measures": wins, "of": total}
        points.append(
            f"Nearer real than the baseline on {wins} of {total} measures (each row of the report's "
            "tables marks the nearer of the two)."
        )
    elif distance is not None:
        out["headline"] = (
            f"Fréchet distance to real in echo features {shown(distance['synthetic'])} (two real sets: "
            f"{shown(distance['reference'])}; lower is nearer real). No baseline was given (--baseline): "
            "the set is compared with real images only."
        )
    else:
        out["headline"] = "No echo-feature distances in this report."
    if distance is not None and distance.get("reference", 0) > 0:
        ratio = distance["synthetic"] / distance["reference"]
        out["distance_to_real_ratio"] = ratio
        how = "close to real" if ratio <= NEAR else "some way from real" if ratio <= FAR else "far from real"
        out["how_near_real"] = how
        echo = report["feature_spaces"]["echo"]
        first = next(iter(echo["synthetic_vs_real"]))
        mine, theirs = echo["synthetic_vs_real"][first], echo["reference_real_vs_train"][first]
        manifold = (
            f"; precision {shown(mine['precision'])} and recall {shown(mine['recall'])} (two real sets: "
            f"{shown(theirs.get('precision'))} and {shown(theirs.get('recall'))})"
            if "precision" in mine
            else ""
        )
        points.append(
            f"How near real: {how}, {ratio:.3g}× the distance between two real sets (close: up to "
            f"{NEAR:g}×, far: over {FAR:g}×){manifold}."
        )
    found = report.get("memorisation", {})
    if "share_above" in found:
        share = found["share_above"]
        out["memorisation_share"] = share
        flagged = len(found.get("flagged", []))
        images = report.get("sets", {}).get("synthetic", {}).get("images", "?")
        points.append(
            f"Memorisation: {100 * share:.1f} % of the synthetic images ({flagged} of {images}) are as close "
            "to a training image as the closest 5 % of real held-out images; "
            + (
                f"no more than new images show (up to about {100 * NEW_IMAGES_FLAGGED:.0f} %)."
                if share <= NEW_IMAGES_FLAGGED
                else f"more than new images show (up to about {100 * NEW_IMAGES_FLAGGED:.0f} %): look at the "
                "closest pairs."
            )
        )
    synthetic_only, real_only = (_downstream_dice(report, c) for c in ("synthetic only", "real only"))
    if synthetic_only is not None and real_only is not None:
        points.append(
            f"Downstream: segmenters trained on the synthetic images alone reach a mean Dice of "
            f"{synthetic_only:.3f} on real test images (trained on real images: {real_only:.3f})."
        )
    if isinstance(report.get("paired"), dict):
        points.append(f"Translations keep their sources: SSIM {shown(report['paired']['ssim'])} to them.")
    return out


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The terminal's rows: measure, synthetic, baseline, real reference."""
    rows = []
    echo = next((s for s in distribution_sections(report) if s.key == "distribution-echo"), None)
    headline = ("Fréchet distance", "KID", "precision", "recall")
    picked = [r for r in (echo.rows if echo else []) if r.measure.split(" (")[0] in headline]
    for row in picked:
        rows.append((f"echo {row.measure}", row.text("synthetic"), row.text("baseline"), row.text("real")))
    for section in (diversity_section(report), spectrum_section(report)):
        row = section.rows[0]
        rows.append((row.measure, row.text("synthetic"), row.text("baseline"), row.text("real")))
    adherence = report.get("adherence")
    if isinstance(adherence, dict):

        def mean_dice(column: str) -> str:
            values = [v["mean"] for v in adherence.get(column, {}).values() if math.isfinite(v["mean"])]
            return shown(sum(values) / len(values)) if values else "—"

        rows.append(("adherence Dice (mean of structures)", *(mean_dice(c) for c in COLUMNS)))
    if isinstance(report.get("paired"), dict):
        rows.append(("SSIM to the source images", shown(report["paired"]["ssim"]), "—", "—"))
    if "share_above" in report.get("memorisation", {}):
        rows.append(
            ("memorisation: share flagged", shown(report["memorisation"]["share_above"], True), "—", "—")
        )
    synthetic_only, real_only = (_downstream_dice(report, c) for c in ("synthetic only", "real only"))
    if synthetic_only is not None:
        rows.append(("downstream Dice (trained on each)", shown(synthetic_only), "—", shown(real_only)))
    return rows


def terminal_summary(report: dict[str, Any]) -> str:
    """A short table for the terminal (measure, synthetic, baseline when given, real reference) and the
    verdict's sentences."""
    baseline = _has_baseline(report)
    header = ("measure", "synthetic", "baseline", "real (ref.)")
    rows = [header, *_summary_rows(report)]
    if not baseline:
        rows = [(r[0], r[1], r[3]) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    found = verdict(report)
    lines += ["", *(textwrap.fill(s, width=100) for s in (found["headline"], *found["points"]))]
    return "\n".join(lines)
