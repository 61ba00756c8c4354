"""MODEL_CARD.md for trained models: what it is, what it was trained on, and the data's licence terms."""

from __future__ import annotations

from typing import Any

CAMUS_TERMS = (
    "Trained on CAMUS (Leclerc et al., IEEE TMI 2019), licensed CC BY-NC-SA 4.0 with the CAMUS terms: "
    "these weights are for **non-commercial research only**, must credit the CAMUS authors, and any "
    "derivative must be shared under the same terms (CC BY-NC-SA 4.0). Cite the CAMUS paper when you use "
    "them."
)


def licence_terms(dataset: str) -> str:
    """The licence paragraph for weights trained on ``dataset``."""
    if dataset.lower().startswith("camus"):
        return CAMUS_TERMS
    return (
        f"Trained on the '{dataset}' dataset: the weights inherit that dataset's licence terms; check them "
        "before sharing or using the model."
    )


GENERATOR_USE = (
    "Research on synthetic training data for echocardiography segmentation. Not for clinical use. "
    "Images follow the conditioning label map; check label adherence (Dice of a segmenter on the "
    "synthetic images) for your own maps before relying on them."
)


def model_card(
    config: Any,
    manifest: Any,
    steps: int,
    kind: str = "2D semantic diffusion model",
    intended_use: str = GENERATOR_USE,
) -> str:
    """A model card from a training config (with ``as_dict``) and the training cache's ``CacheManifest``."""
    counts = manifest.counts
    settings = config.as_dict()
    lines = [
        f"# EchoSynth {kind}",
        "",
        "## Model",
        f"- Network settings: {', '.join(f'{k}={v}' for k, v in settings.items() if k != 'classes')}",
        *([f"- Classes: {settings['classes']}"] if "classes" in settings else []),
        f"- Trained steps: {steps}",
        "",
        "## Training data",
        f"- Dataset: {manifest.dataset} (cache settings {manifest.settings})",
        "- Cases: "
        + ", ".join(f"{s} {c.get('cases')} ({c.get('patients')} patients)" for s, c in counts.items()),
        "",
        "## Licence",
        licence_terms(manifest.dataset),
        "",
        "## Intended use and limits",
        intended_use,
        "",
    ]
    return "\n".join(lines)


def training_provenance(cache: Any, steps: int) -> dict[str, Any]:
    """What a model package records about its training: steps, dataset, cache settings, counts, licence."""
    manifest = cache.manifest
    return {
        "trained_steps": steps,
        "training_data": {
            "dataset": manifest.dataset,
            "cache": str(cache.path),
            "cache_settings": manifest.settings,
            "counts": manifest.counts,
            "licence": licence_terms(manifest.dataset),
        },
    }
