"""New anatomies from a statistical shape model (the ``shape-model`` family, issue 34 section 3)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from test_slicer_module import module  # noqa: F401 (the module file against stand-ins)
from test_slicer_panel import panel  # noqa: F401 (the widget on stand-ins)
from test_slicer_scene import scene  # noqa: F401 (a scene with the sequence classes)

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.cli.main import main
from EchoSynthLib.data.io import read_image, read_label_map
from EchoSynthLib.data.labels import ECHOSYNTH, Structure
from EchoSynthLib.models.shape_model.distances import (
    ATRIUM,
    CAVITY,
    MYOCARDIUM,
    labels_from,
    signed_distances,
)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def shape_model(tiny_cache, tmp_path_factory):
    """A shape model of ``tiny_cache``'s training maps (4CH phantoms, ED + ES), drawing with the simulator."""
    run = tmp_path_factory.mktemp("shape-model") / "run"
    command = ["train", "shape-model", "--data", str(tiny_cache), "--out", str(run), "--set", "grid=32"]
    assert main([*command, "--set", "image_model=simulator", "--set", "truncation=0.1"]) == 0
    return run / "model"


def test_a_map_survives_signed_distances_and_back():
    """A phantom map as signed distances on a 64 grid and back on its own grid: each structure where it
    was (Dice >= 0.9), nested as a heart (the myocardium around the cavity, all inside the sector). Fails
    where the regions' order or nesting is wrong (the cavity would be drawn over by the myocardium)."""
    labels = phantom_label_map("4CH", "ED", seed=0, grid=PhantomGrid.for_view("4CH", size=96)).labels.array[0]
    distances = signed_distances(labels, 64, band=16.0)
    assert distances.min() == -16.0 and distances.max() == 16.0  # clipped to the band
    back = labels_from(distances, labels.shape)
    for structure in (CAVITY, MYOCARDIUM, ATRIUM):
        assert _dice(back == structure, labels == structure) >= 0.9, structure
    assert _dice(back > 0, labels > 0) >= 0.97
    # An atrium whose distances stay positive everywhere: gone at level 0; with a minimum share it is
    # drawn at a raised level, where its own shape was (fails where the minimum is not applied).
    raised = distances.copy()
    raised[2] += float(-raised[2].min()) + 0.5
    assert not (labels_from(raised, labels.shape) == ATRIUM).any()
    kept = labels_from(raised, labels.shape, minimum=0.01) == ATRIUM
    assert kept.sum() >= 0.01 * labels.size * 0.9 and (labels[kept] == ATRIUM).mean() >= 0.9


def test_the_fit_keeps_ed_and_es_together_and_draws_new_hearts(shape_model, tiny_cache):
    """``train shape-model``: a package of safetensors + JSON (views, modes) and a log; drawn near the mean, a
    heart's ED and ES (cases 0 and 1) are the training hearts' kind: the ES cavity smaller (a positive
    ejection fraction), the cavity area inside the training maps' range; the same seed gives the same maps,
    another seed another heart."""
    from EchoSynthLib.cache.store import CacheIndex
    from EchoSynthLib.models.shape_model.pipeline import ShapeModel

    config = json.loads((shape_model / "config.json").read_text())
    assert config["kind"] == "shape-model" and config["settings"]["views"] == ["any"]
    assert {p.suffix for p in shape_model.iterdir()} == {".json", ".safetensors", ".md"}
    assert (shape_model.parent / "log.jsonl").is_file()
    model = ShapeModel.load(shape_model, "cpu")
    ed, es = (m.array[0] for m in model.generate_maps(2, seed=3))
    assert (es == CAVITY).sum() < (ed == CAVITY).sum()
    cache = CacheIndex.open(tiny_cache)
    areas = [
        (cache.label_map(e, cache.load(e)[1]).array == CAVITY).sum()
        for e in cache.cases("train")
        if e["case_id"].endswith("_ED")
    ]
    assert min(areas) * 0.8 <= (ed == CAVITY).sum() <= max(areas) * 1.2
    again, same = model.generate_maps(2, seed=3), model.generate_maps(2, seed=3)
    assert all(np.array_equal(a.array, b.array) for a, b in zip(again, same, strict=True))
    wide = ShapeModel.load(shape_model, "cpu")
    wide.config = wide.config.with_overrides({"truncation": 3.0})
    assert not np.array_equal(wide.generate_maps(1, seed=3)[0].array, wide.generate_maps(1, seed=4)[0].array)
    # In batches (``generate`` draws 16 cases a call, seed + start): the same hearts as in one call (fails
    # where a heart takes seed + its index within the call).
    whole = wide.generate_maps(4, seed=3)
    batched = wide.generate_maps(2, seed=3) + wide.generate_maps(2, seed=5)
    assert all(np.array_equal(a.array, b.array) for a, b in zip(whole, batched, strict=True))


def test_generate_writes_pairs_of_new_hearts_and_their_images(shape_model, tmp_path, capsys):
    """``echosynth generate --model <shape model>``: image + segmentation files per case on the model's
    grid, the image black outside the sector and the labels a heart."""
    out = tmp_path / "cases"
    assert main(["generate", "--model", str(shape_model), "--n", "3", "--seed", "2", "--out", str(out)]) == 0
    assert "2D paired model model" in capsys.readouterr().out
    for k in range(3):
        image = read_image(out / f"case_{k:04d}_image.nrrd")
        labels = read_label_map(out / f"case_{k:04d}_labels.seg.nrrd", ECHOSYNTH)
        assert image.same_geometry(labels) and image.array.dtype == np.uint8
        assert {CAVITY, MYOCARDIUM} <= set(np.unique(labels.array).tolist())
        assert image.array[labels.array == Structure.BACKGROUND.label].max() == 0


def test_slicer_downloads_the_image_model_a_shape_model_draws_with(
    panel,  # noqa: F811
    module,  # noqa: F811
    shape_model,
    tmp_path,
    monkeypatch,
):
    """Generate cases with a shape model whose image model is listed but not installed: the panel downloads
    that one too before the run (as it downloads the chosen model). Fails where only the chosen model is
    fetched (the run would then stop on a missing model)."""
    from conftest import package_with_settings
    from test_slicer_panel import Node

    from EchoSynthLib.store import registry

    package = package_with_settings(shape_model, tmp_path / "ssm", image_model="remote-latent")
    assert registry.models_drawn_with(package) == ["remote-latent"]
    assert registry.models_drawn_with(shape_model) == []  # the simulator: nothing to fetch
    panel.setParameterNode(Node(module.MODES, mode="generate"))
    panel._parameterNode.generator = str(package)
    monkeypatch.setattr(registry, "download_needed", lambda name: name if name == "remote-latent" else None)
    fetched = []
    monkeypatch.setattr(panel, "downloadModel", lambda model: fetched.append(model) or True)
    assert panel._modelsInstalled() and fetched == ["remote-latent"]
    # The console's logic.generateCases (prepareRun) fetches it too.
    import slicer

    from EchoSynthScene import dependencies

    monkeypatch.setattr(dependencies, "ensure", lambda needs, ask: None)
    monkeypatch.setattr(
        slicer, "app", SimpleNamespace(majorVersion=5, minorVersion=10, processEvents=lambda: None)
    )
    logic = module.EchoSynthLogic()
    asked = []
    monkeypatch.setattr(logic, "downloadModel", lambda model, **kwargs: asked.append(model))
    logic.prepareRun(str(package), ask=False)
    assert asked == [str(package), "remote-latent"]


def test_generate_cases_works_out_of_the_box_with_the_shipped_model(scene, panel, module):  # noqa: F811
    """Slicer's Generate cases with nothing but what ships: the panel's generate mode offers the shipped
    shape model first, and a run through the real worker adds an ED and an ES case (echo volume +
    segmentation with a heart) in a new study."""
    from test_slicer_panel import Node

    from EchoSynthScene import synthesis
    from EchoSynthScene.labels import label_map_from_node

    node = Node(module.MODES)
    panel.setParameterNode(node)
    node.mode = "generate"  # the simulator cannot generate cases: the first paired model is chosen
    assert node.generator == "shape-camus128"
    nodes = synthesis.generate_cases(scene, generator="shape-camus128", n=2, seed=0, device="cpu")
    assert [n.GetName() for n in nodes] == ["case 1 echo", "case 1 labels", "case 2 echo", "case 2 labels"]
    cavities = []
    for volume, segmentation in (nodes[:2], nodes[2:]):
        labels = label_map_from_node(segmentation, volume).array
        assert {CAVITY, MYOCARDIUM} <= set(np.unique(labels).tolist())
        cavities.append((labels == CAVITY).sum())
    assert cavities[1] < cavities[0]  # case 1 is the heart's ED, case 2 its ES
