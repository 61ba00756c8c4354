"""The degradation chain of issue 33 (``augmentation.degradations``): seeded per image, black outside the
sector, each kind doing what it names, held-out kinds never drawn in training, and a source-guided run that
trains on chains of its config's kinds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ADVERSARIAL_RUN, TINY_ADVERSARIAL

from EchoSynthLib.augmentation import degradations
from EchoSynthLib.augmentation.degradations import HELD_OUT, KINDS, TRAINING, degrade, persist
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.engine.settings import RunSettings
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.adversarial.config import AdversarialConfig
from EchoSynthLib.models.adversarial.trainer import AdversarialTrainer


def speckled(count: int = 2, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Fine speckle inside a sector (the right-hand columns) and black outside it."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand((count, 1, size, size), generator=generator) * 1.6 - 0.8
    inside = torch.ones_like(images, dtype=torch.bool)
    inside[..., :8] = False
    return torch.where(inside, images, -1.0), inside


def neighbour_correlation(x: torch.Tensor, dim: int = -1) -> float:
    inner = x[:, 0, 4:-4, 12:-4]
    a, b = inner.narrow(dim, 0, inner.shape[dim] - 1), inner.narrow(dim, 1, inner.shape[dim] - 1)
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_a_chain_is_seeded_per_image_stays_in_range_and_black_outside_the_sector():
    images, inside = speckled(3)
    once = degrade(images, inside, [1, 2, 1])
    assert once.shape == images.shape and once.min() >= -1 and once.max() <= 1
    assert (once[..., :8] == -1).all()
    torch.testing.assert_close(once, degrade(images, inside, [1, 2, 1]))
    torch.testing.assert_close(once[0], degrade(images[:1], inside[:1], [1])[0])  # each image its own chain
    assert not torch.allclose(once[1], degrade(images[1:2], inside[1:2], [3])[0], atol=0.02)
    torch.testing.assert_close(degrade(images, inside, [1, 2, 3], kinds=()), images)  # no kind: unchanged


def test_each_kind_changes_the_image_the_way_it_names():
    images, inside = speckled(1, 64)

    def only(kind: str, seed: int = 0) -> torch.Tensor:
        return degrade(images, inside, [seed], kinds=(), always=(kind,))

    for kind in KINDS:
        assert not torch.allclose(only(kind), images, atol=0.01), kind
    base = neighbour_correlation(images)
    for kind in ("blur", "speckle", "resample"):  # wider speckle: neighbours agree more
        assert neighbour_correlation(only(kind)) > base + 0.2, kind
    assert neighbour_correlation(only("sharpen")) < base  # edge enhancement: neighbours agree less
    blurred = only("blur", seed=5)
    assert neighbour_correlation(blurred, dim=-1) > neighbour_correlation(blurred, dim=-2)  # wider laterally
    mapped = only("grey_map")[inside].flatten()  # a monotone grey map keeps the order of the grey levels
    order = torch.argsort(images[inside].flatten())
    assert (torch.diff(mapped[order]) >= -1e-6).all()
    flat = torch.full_like(images, 0.0)
    gained = degrade(flat, inside, [0], kinds=(), always=("tgc",))[0, 0, :, 12:]
    assert abs(float(gained[-4:].mean() - gained[:4].mean())) > 0.05  # another gain with depth
    hazy = degrade(torch.full_like(images, -0.9), inside, [0], kinds=(), always=("haze",))
    assert float(hazy[inside].mean()) > -0.85  # haze lifts the dark cavities


def test_compression_leaves_the_blocks_of_a_jpeg_encoder():
    images, inside = speckled(1, 64)
    inside[:] = True
    compressed = degrade(images, inside, [0], kinds=(), always=("compression", "blur"))
    smooth = degrade(images, inside, [0], kinds=(), always=("blur",))
    jumps = (compressed - smooth)[0, 0].diff(dim=-1).abs()
    at_edges = jumps[:, 7::8].mean()  # between 8x8 blocks
    within = jumps[:, 3::8].mean()
    assert at_edges > 1.2 * within


def test_training_never_draws_a_held_out_kind_and_unknown_kinds_are_refused(monkeypatch):
    assert set(TRAINING) | set(HELD_OUT) == set(KINDS) and not set(TRAINING) & set(HELD_OUT)
    applied: list[str] = []
    for name in KINDS:
        kind = degradations.CHAIN[name]
        monkeypatch.setitem(
            degradations.CHAIN, name, lambda u, m, d, n, k=kind, a=name: applied.append(a) or k(u, m, d, n)
        )
    images, inside = speckled(1)
    for seed in range(40):
        degrade(images, inside, [seed])
    assert set(applied) == set(TRAINING)
    with pytest.raises(InputError, match=r"unknown degradation kind.*jpeg"):
        degrade(images, inside, [0], kinds=("blur", "jpeg"))
    with pytest.raises(InputError, match="unknown degradation kind"):
        AdversarialConfig.from_dict(TINY_ADVERSARIAL).with_overrides({"degradations": ("blurry",)})


def test_persistence_mixes_each_frame_with_the_last_and_calms_a_loop():
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand((6, 1, 16, 16), generator=generator) * 2 - 1
    torch.testing.assert_close(persist(frames, 1.0), frames)
    shown = persist(frames, 0.5)
    torch.testing.assert_close(shown[1], 0.5 * frames[1] + 0.5 * frames[0])
    assert shown.diff(dim=0).abs().mean() < frames.diff(dim=0).abs().mean()
    with pytest.raises(ValueError, match="keep"):
        persist(frames, 0.0)


def test_a_run_with_degradations_trains_on_seeded_chains_of_its_kinds(tiny_cache, tmp_path):
    """The source guide of each training image is that image through a chain of the config's kinds, drawn
    from the step's seeded draws (a resumed run replays it); validation keeps the fixed stand-in."""
    from EchoSynthLib.augmentation.scanner_look import STAND_IN

    config = AdversarialConfig.from_dict(TINY_ADVERSARIAL).with_overrides(
        {"guide": "labels+source", "degradations": ("blur", "grey_map"), "batch_size": 2}
    )
    trainer = AdversarialTrainer(tiny_cache, tmp_path / "run", config, "cpu", RunSettings(**ADVERSARIAL_RUN))
    items = [trainer.train_set[i] for i in range(2)]
    batch = {k: torch.stack([x[k] for x in items]) for k in ("image", "labels")}
    batch["case_id"] = [x["case_id"] for x in items]
    draws = trainer._draws(3, 0, 2, train=True)
    draws["flip"][:] = False
    image, seg, guide = trainer._inputs(batch, draws, "train", training=True)
    inside = seg[:, trainer.config.classes.structures.index(Structure.BACKGROUND)][:, None] < 0.5
    seeds = draws["look_seed"].tolist()
    torch.testing.assert_close(guide, degrade(image, inside, seeds, ("blur", "grey_map")))
    assert torch.equal(guide, trainer._inputs(batch, trainer._draws(3, 0, 2, train=True), "train", True)[2])
    torch.testing.assert_close(trainer._inputs(batch, draws, "val")[2], STAND_IN(image, inside))
    assert np.isfinite(trainer.train_step(batch, 0)["loss"])


def test_sampling_with_looks_gives_each_image_a_seeded_look_of_its_own(phantom_2d, tmp_path):
    """``--looks family``: every generator's images (here the simulator's) each in a look drawn from its own
    seed (two images of a run differ in look, a rerun gives the same bytes, map by map or across maps),
    black outside the sector; ``none`` leaves the generator's images as they are."""
    from EchoSynthLib.cli.main import main
    from EchoSynthLib.data.io import read_image, write_label_map
    from EchoSynthLib.inference.generators import GeneratorSettings, generate_for_maps, open_generator

    plain = open_generator(GeneratorSettings("simulator"))
    looked = open_generator(GeneratorSettings("simulator", looks="family"))
    labels = looked.prepare(phantom_2d.labels)
    bare = plain.generate(labels, 2, seed=5)
    images = looked.generate(labels, 2, seed=5)
    again = generate_for_maps(looked, [labels, labels], [1, 1], seed=5)
    assert [i.array.tobytes() for i in images] == [again[0][0].array.tobytes(), again[1][0].array.tobytes()]
    outside = labels.array == 0
    for image, base in zip(images, bare, strict=True):
        assert not np.array_equal(image.array, base.array) and (image.array[outside] == 0).all()
    assert "scanner look" in looked.description
    write_label_map(phantom_2d.labels, tmp_path / "map.nii.gz")
    args = ["synthesize", "--model", "simulator", "--labels", str(tmp_path / "map.nii.gz"), "--seed", "5"]
    assert main([*args, "--looks", "all", "--n", "2", "--out", str(tmp_path / "out")]) == 0
    written = sorted((tmp_path / "out").glob("*.nii.gz"))
    assert len(written) == 2 and not np.array_equal(
        read_image(written[0]).array, read_image(written[1]).array
    )
