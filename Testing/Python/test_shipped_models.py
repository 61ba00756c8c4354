"""The models that ship in Resources/Models: each is a valid package within the size limit, its card carries
its data's licence, its training steps and its evaluation, and each label map -> image model makes images
that follow a map, on the map's grid, as shipped (its own sampling defaults)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.store.families import LABELS_TO_IMAGE, task_of
from EchoSynthLib.store.package import CARD, read_package_header
from EchoSynthLib.store.registry import installed_models

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "Resources" / "Models"
SHIPPED = installed_models(cache_dir=ROOT / "no-such-cache", bundled_dir=BUNDLED)
MAX_FILE_BYTES = 16 * 1024 * 1024  # the shipping rule: no file above 16 MB


def test_the_shipped_folders_are_all_valid_packages():
    folders = sorted(p.name for p in BUNDLED.iterdir() if p.is_dir())
    assert folders == sorted(model.name for model in SHIPPED)
    generators = {"sdm-camus64", "adversarial-camus64", "latent-camus128"}
    assert {"echo-encoder-camus", "segmenter-camus", *generators} <= set(folders)


@pytest.mark.parametrize("model", SHIPPED, ids=lambda m: m.name)
def test_a_shipped_model_is_small_enough_and_its_card_says_where_it_comes_from(model):
    for file in model.path.iterdir():
        assert file.stat().st_size <= MAX_FILE_BYTES, file
    header = read_package_header(model.path)
    card = (model.path / CARD).read_text()
    assert f"Trained steps: {header['provenance']['trained_steps']}" in card
    assert "CC BY-NC-SA 4.0" in card and "non-commercial" in card
    if task_of(header["kind"]) == LABELS_TO_IMAGE:  # generators ship on their evaluation
        assert "echosynth evaluate" in card and "simulator" in card


@pytest.mark.parametrize(
    "model", [m for m in SHIPPED if task_of(m.kind) == LABELS_TO_IMAGE], ids=lambda m: m.name
)
def test_a_shipped_generator_follows_a_map_with_its_own_defaults(model):
    """A generator makes an image from the map; a model that only translates (guided by the source image)
    makes it from the simulator's image of the map, and refuses the map alone."""
    from EchoSynthLib.errors import InputError
    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator
    from EchoSynthLib.simulation import simulate_bmode

    labels = phantom_label_map("4CH", "ED", seed=3, grid=PhantomGrid.for_view("4CH", size=64)).labels
    generator = open_generator(GeneratorSettings(model.name, steps=10, device="cpu"))
    prepared = generator.prepare(labels)
    if model.translates_only:
        with pytest.raises(InputError, match="translates images"):
            generator.generate(prepared, 1, 0)
        image = generator.translate(simulate_bmode(labels, 1), prepared, 0)
    else:
        image = generator.generate(prepared, 1, 0)[0]
    assert image.same_geometry(labels) and image.array.dtype == np.uint8
    inside = image.array[labels.array != Structure.BACKGROUND.label]
    cavity = image.array[labels.array == Structure.LV_CAVITY.label]
    wall = image.array[labels.array == Structure.LV_MYOCARDIUM.label]
    assert inside.std() > 5 and wall.mean() > cavity.mean() + 10  # an echo image: bright wall, dark blood
