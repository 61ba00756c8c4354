"""``echosynth adapt`` (issue 33 section 3): a look fitted from unlabelled images of a scanner brings a
model's images nearer that scanner's, resumes where it stopped, and gives a model package that
``synthesize`` and ``translate`` use; bad input is refused with one line and nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import edit_package_settings, write_phantom_maps

from EchoSynthLib.adaptation.adapt import work_folder
from EchoSynthLib.adaptation.fit import FitState, fit_look
from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.augmentation.degradations import (
    KINDS,
    SETTINGS_PER_KIND,
    FixedDraws,
    degrade_fixed,
)
from EchoSynthLib.cli.main import main
from EchoSynthLib.data.io import read_image, write_image
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.models.adapted.look import FittedLook
from EchoSynthLib.simulation import simulate_bmode

SCANNER = ("blur", "grey_map")  # the look of the test's "scanner"


def scanner_settings() -> np.ndarray:
    settings = np.full((len(KINDS), SETTINGS_PER_KIND), 0.5)
    settings[KINDS.index("blur")] = 0.9  # wide point spread
    settings[KINDS.index("grey_map")] = [0.9, 0.1, 0.9, 0.1, 0.9, 0.95, 0.1, 0.2]  # hard, dark grey map
    return settings


def simulated(count: int, size: int = 48, first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulator images (count, 1, size, size) in [-1, 1] of phantom maps, and their sectors."""
    images, inside = [], []
    for k in range(count):
        view = ("4CH", "2CH")[k % 2]
        labels = phantom_label_map(view, "ED", first + k, PhantomGrid.for_view(view, size=size)).labels
        images.append(simulate_bmode(labels, first + k).array.reshape(size, size) / 127.5 - 1.0)
        inside.append(labels.array.reshape(size, size) != 0)
    return torch.from_numpy(np.stack(images)[:, None].astype(np.float32)), torch.from_numpy(
        np.stack(inside)[:, None]
    )


def statistics(images: np.ndarray) -> np.ndarray:
    """A cheap stand-in for the echo encoder: grey-level histogram and edge energy of each image."""
    histogram = np.stack([np.histogram(x, bins=8, range=(-1, 1))[0] / x.size for x in images])
    edges = np.abs(np.diff(images, axis=-1)).mean(axis=(-1, -2))[:, None]
    return np.concatenate([histogram, 4 * edges], axis=1)


def test_fixed_draws_map_numbers_onto_the_ranges_a_kind_asks_for():
    draws = FixedDraws([0.5, 0.25, 0.0, 1.0, 0.6, 0.99])
    assert draws.uniform(2.0, 4.0) == 3.0 and draws.random() == 0.25
    assert draws.choice(["a", "b"]) == "a" and draws.choice(["a", "b"]) == "b"
    assert draws.integers(8, 60) == 8 + int(0.6 * 52)
    assert list(draws.uniform(0.0, 2.0, size=1)) == [1.98]
    with pytest.raises(ValueError, match="more than the 6"):
        draws.random()
    # every kind draws at most SETTINGS_PER_KIND numbers (a look has room for each kind's settings)
    images, inside = simulated(1, 32)
    everything = degrade_fixed(images, inside, KINDS, np.full((len(KINDS), SETTINGS_PER_KIND), 0.5), [0])
    assert everything.shape == images.shape and not torch.equal(everything, images)


def test_a_fixed_look_is_the_same_for_every_image_and_seeded_only_in_its_noise():
    images, inside = simulated(2, 32)
    look = FittedLook(SCANNER, scanner_settings())
    first = look.apply(images, inside, [3, 4])
    torch.testing.assert_close(first, look.apply(images, inside, [3, 4]))
    assert (first[~inside] == -1).all()  # black outside the sector
    # no noise kind: the seed changes nothing; with one, only the noise differs
    torch.testing.assert_close(first, look.apply(images, inside, [7, 8]))
    noisy = FittedLook(("noise",), scanner_settings())
    assert not torch.equal(noisy.apply(images, inside, [1, 2]), noisy.apply(images, inside, [3, 4]))


def test_the_fit_brings_the_images_nearer_the_scanner_and_resumes_where_it_stopped(tmp_path):
    base, inside = simulated(12)
    truth, truth_inside = simulated(12, first=100)
    target = statistics(
        degrade_fixed(truth, truth_inside, SCANNER, scanner_settings(), range(12))[:, 0].numpy()
    )
    embed = statistics
    whole = fit_look(base, inside, target, embed, tmp_path / "whole.json", rounds=3, candidates=3, seed=1)
    assert whole.distance < 0.5 * whole.start_distance  # measured: about a tenth
    assert set(whole.look.kinds) & {"grey_map", "tgc", "scanner_look"}  # a kind that changes grey levels
    # stopped after one round, then run again: the same look as one run
    state = tmp_path / "resumed.json"
    fit_look(base, inside, target, embed, state, rounds=1, candidates=3, seed=1)
    assert FitState.load(state).rounds_done == 1
    resumed = fit_look(base, inside, target, embed, state, rounds=3, candidates=3, seed=1)
    assert resumed.look.kinds == whole.look.kinds and resumed.distance == whole.distance
    np.testing.assert_array_equal(resumed.look.settings, whole.look.settings)


def write_scanner_images(folder, count: int = 16, size: int = 64, kinds: tuple[str, ...] = SCANNER):
    """``count`` images of the test's scanner (the simulator's in the look of ``kinds``) in ``folder``."""
    folder.mkdir()
    images, inside = simulated(count, size, first=200)
    looked = degrade_fixed(images, inside, kinds, scanner_settings(), range(count)) if kinds else images
    for k, image in enumerate(looked[:, 0].numpy()):
        grey = np.rint((image + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
        write_image(Volume.from_2d(grey, (0.5, 0.5)), folder / f"frame{k:02d}.nii.gz")


def test_adapt_writes_a_model_that_synthesize_draws_in_the_scanners_look(tmp_path, capsys):
    scanner = tmp_path / "scanner"
    write_scanner_images(scanner)
    out = tmp_path / "my-scanner"
    command = ["adapt", "--images", str(scanner), "--out", str(out), "--base", "simulator"]
    command += ["--maps", "8", "--rounds", "2", "--candidates", "2", "--threads", "1"]
    assert main(command) == 0, capsys.readouterr().err
    assert not work_folder(out).exists()  # the work is removed once the package is written
    document = json.loads((out / "config.json").read_text())
    fit = document["provenance"]["fit"]
    assert document["kind"] == "adapted-look" and fit["images"] == 16
    assert fit["echo_frechet_distance_after"] < fit["echo_frechet_distance_before"]
    assert "simulator" in (out / "MODEL_CARD.md").read_text()
    maps = write_phantom_maps(tmp_path / "maps", ("4CH",), size=48)
    capsys.readouterr()
    synthesize = ["synthesize", "--model", str(out), "--labels", str(tmp_path / "maps"), "--out"]
    assert main([*synthesize, str(tmp_path / "drawn"), "--seed", "4"]) == 0
    assert "in the look adapted to my-scanner" in capsys.readouterr().out
    drawn = read_image(tmp_path / "drawn" / "m0_synth00.nii.gz")
    plain = simulate_bmode(maps[0], 4)
    assert drawn.same_geometry(maps[0]) and not np.array_equal(drawn.array, plain.array)
    assert document["settings"]["kinds"]  # the fit kept at least one kind
    assert main(command) == 0  # a rerun replaces the adapted model it wrote


def test_adapt_refuses_bad_input_with_one_line_and_writes_nothing(tmp_path, capsys):
    few = tmp_path / "few"
    write_scanner_images(few, count=3)
    out = tmp_path / "out"
    base = ["adapt", "--base", "simulator", "--maps", "8", "--rounds", "1", "--candidates", "1"]
    assert main([*base, "--images", str(few), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "at least 16" in error and error.count("\n") == 1
    assert not out.exists() and not work_folder(out).exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    scanner = tmp_path / "scanner"
    write_scanner_images(scanner)
    assert main([*base, "--images", str(scanner), "--out", str(taken)]) == 2
    assert "refusing" in capsys.readouterr().err and (taken / "notes.txt").read_text() == "mine"
    assert main([*base, "--images", str(scanner), "--out", str(scanner / "inside")]) == 2
    assert not (scanner / "inside").exists()


def test_an_adapted_model_whose_base_changed_is_refused(tmp_path, capsys, tiny_adversarial):
    from EchoSynthLib.errors import InputError
    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator

    scanner = tmp_path / "scanner"
    write_scanner_images(scanner)
    out = tmp_path / "adapted"
    command = ["adapt", "--images", str(scanner), "--out", str(out), "--base", "simulator"]
    assert main([*command, "--maps", "8", "--rounds", "1", "--candidates", "1"]) == 0, capsys.readouterr().err
    edit_package_settings(out, lambda s: s.update(base=str(tiny_adversarial.run / "model")))
    with pytest.raises(InputError, match="not the one this look was fitted to"):
        open_generator(GeneratorSettings(str(out), device="cpu"))


def test_cine_loops_give_their_frames(tmp_path, capsys):
    """``--video``: evenly spaced frames of each loop (at most FRAMES_PER_VIDEO), in the scanner's look."""
    import cv2

    from EchoSynthLib.adaptation.adapt import FRAMES_PER_VIDEO, scanner_images

    images, inside = simulated(40, 64, first=300)
    looked = degrade_fixed(images, inside, SCANNER, scanner_settings(), range(40))
    loop = tmp_path / "loop.avi"
    writer = cv2.VideoWriter(str(loop), cv2.VideoWriter_fourcc(*"MJPG"), 50, (64, 64))
    for image in looked[:, 0].numpy():
        grey = np.rint((image + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
        writer.write(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    writer.release()
    frames = scanner_images(None, (loop,), (32, 32))
    assert frames.shape == (20, 32, 32) and len(frames) <= FRAMES_PER_VIDEO  # every 2nd of 40 frames
    # the first frame, halved onto the 32 grid (MJPG is lossy: within a few grey levels)
    first = looked[0, 0].numpy().reshape(32, 2, 32, 2).mean(axis=(1, 3))
    assert np.abs(frames[0] - first).mean() < 0.05
    out = tmp_path / "from-loop"
    command = ["adapt", "--video", str(loop), "--out", str(out), "--base", "simulator"]
    assert main([*command, "--maps", "8", "--rounds", "1", "--candidates", "1"]) == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["provenance"]["fit"]["images"] == 20
    assert main(["adapt", "--out", str(tmp_path / "none"), "--base", "simulator"]) == 2
    assert "--images" in capsys.readouterr().err


def test_a_stopped_run_resumes_only_with_the_same_images_and_settings(tmp_path, capsys, monkeypatch):
    """The work beside the output: a run stopped after its first round resumes from it (the same look as
    one whole run); another run's work (other images) is thrown away, not resumed; a folder of that name
    holding anything else is refused."""
    from EchoSynthLib.adaptation import adapt as adapting

    scanner = tmp_path / "scanner"
    write_scanner_images(scanner)
    base = ["adapt", "--base", "simulator", "--maps", "8", "--candidates", "2", "--images", str(scanner)]
    assert main([*base, "--rounds", "2", "--out", str(tmp_path / "whole")]) == 0, capsys.readouterr().err
    whole = json.loads((tmp_path / "whole" / "config.json").read_text())

    def stop(*args, **kwargs):
        raise KeyboardInterrupt  # killed after the fit, before the package is written

    out = tmp_path / "resumed"
    monkeypatch.setattr(adapting, "_write_package", stop)
    with pytest.raises(KeyboardInterrupt):
        adapting.adapt(adapting.AdaptSettings(scanner, out, "simulator", 8, 1, 2))
    assert work_folder(out).is_dir() and not out.exists()
    monkeypatch.undo()
    assert FitState.load(work_folder(out) / "fit.json").rounds_done == 1
    assert main([*base, "--rounds", "2", "--out", str(out)]) == 0, capsys.readouterr().err
    resumed = json.loads((out / "config.json").read_text())
    assert resumed["settings"] == whole["settings"] and not work_folder(out).exists()
    # another run's work under the same name: started over, not resumed
    other = tmp_path / "other"
    write_scanner_images(other, kinds=())  # another scanner: the simulator's own look
    monkeypatch.setattr(adapting, "_write_package", stop)
    with pytest.raises(KeyboardInterrupt):
        adapting.adapt(adapting.AdaptSettings(other, tmp_path / "again", "simulator", 8, 2, 2))
    monkeypatch.undo()
    assert main([*base, "--rounds", "2", "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["provenance"]["fit"]["images"] == 16 and again["settings"] == whole["settings"]
    foreign = work_folder(tmp_path / "mine")
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main([*base, "--rounds", "1", "--out", str(tmp_path / "mine")]) == 2
    assert "not an earlier adapt run's work" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine" and not (tmp_path / "mine").exists()


def test_a_look_keeps_its_scale_on_a_finer_grid():
    """An adapted look is applied at the scale it was fitted on: on an image of twice the grid, its blur
    is twice as wide in pixels (the same relative to the image), and it stays black outside the sector."""
    images, inside = simulated(1, 48)
    fine = torch.nn.functional.interpolate(images, scale_factor=2, mode="bilinear", align_corners=False)
    fine_inside = torch.nn.functional.interpolate(inside.float(), scale_factor=2, mode="nearest") > 0.5
    look = FittedLook(("blur",), scanner_settings(), grid=48)
    on_grid = look(images, inside, 0)
    on_fine = look(fine, fine_inside, 0)
    plain = FittedLook(("blur",), scanner_settings())(fine, fine_inside, 0)  # pixels of the fine grid

    def sharpness(x):
        return float(np.abs(np.diff(x[0, 0].numpy(), axis=-1)).mean())

    assert on_fine.shape == fine.shape and (on_fine[~fine_inside] == -1).all()
    assert sharpness(on_fine) < 0.75 * sharpness(plain)  # blurred at the fitted scale: twice as wide here
    assert abs(sharpness(on_fine) * 2 - sharpness(on_grid)) < 0.5 * sharpness(on_grid)


@pytest.fixture(scope="module")
def tiny_translator(tiny_cache, tmp_path_factory):
    """A tiny source-guided translator package (2 steps on ``tiny_cache``)."""
    from conftest import ADVERSARIAL_RUN, TINY_ADVERSARIAL

    from EchoSynthLib.engine.settings import RunSettings
    from EchoSynthLib.models.adversarial.config import AdversarialConfig
    from EchoSynthLib.models.adversarial.trainer import AdversarialTrainer

    config = AdversarialConfig.from_dict({**TINY_ADVERSARIAL, "guide": "labels+source", "batch_size": 2})
    run = tmp_path_factory.mktemp("translator") / "run"
    settings = RunSettings(**{**ADVERSARIAL_RUN, "max_steps": 2, "checkpoint_every": 2, "val_every": 2})
    AdversarialTrainer(tiny_cache, run, config, "cpu", settings).fit()
    return run / "model"


def test_the_way_back_trains_on_the_fitted_look(tiny_translator, tmp_path):
    """The way back's source guides are its targets in the fitted look (seeded by the step's draws)."""
    from EchoSynthLib.adaptation.way_back import RECIPE, WayBackTrainer, training_cache
    from EchoSynthLib.engine.settings import RunSettings
    from EchoSynthLib.models.adversarial.config import AdversarialConfig

    images, inside = simulated(4, 48)
    labels = np.where(inside[:, 0].numpy(), 5, 0).astype(np.uint8)
    labels[:, 20:28, 20:28] = 1  # an LV cavity, so that the maps are heart maps
    data = training_cache(tmp_path / "data", images, labels, 32)
    look = FittedLook(SCANNER, scanner_settings(), 48)
    config = AdversarialConfig.from_dict({**RECIPE, "image_size": 32, "batch_size": 2})
    settings = RunSettings(max_steps=1, workers=0, init=str(tiny_translator))
    trainer = WayBackTrainer(data.path, tmp_path / "run", config, look, "cpu", settings)
    items = [trainer.train_set[i] for i in range(2)]
    batch = {k: torch.stack([x[k] for x in items]) for k in ("image", "labels")}
    draws = trainer._draws(0, 0, 2, train=True)
    guides = trainer._image_guides(batch, "train", draws)
    image, within = trainer._source(batch)
    seeds = draws["look_seed"].tolist()
    for b in range(2):
        expected = look(image[b : b + 1], within[b : b + 1], int(seeds[b]) % 2**31)
        torch.testing.assert_close(guides[b : b + 1], expected)
    assert not torch.equal(guides, image)
    assert np.isfinite(trainer.train_step(batch | {"case_id": ["a", "b"]}, 0)["loss"])


def test_adapt_with_a_way_back_writes_a_translator_from_the_scanner(tiny_translator, tmp_path, capsys):
    from EchoSynthLib.store.package import read_weights

    scanner = tmp_path / "scanner"
    write_scanner_images(scanner)
    out = tmp_path / "my-scanner"
    command = ["adapt", "--images", str(scanner), "--out", str(out), "--base", "simulator", "--maps", "8"]
    command += ["--rounds", "1", "--candidates", "1", "--threads", "1", "--way-back", "2"]
    assert main([*command, "--translator", str(tiny_translator)]) == 0, capsys.readouterr().err
    assert not work_folder(out).exists()
    document = json.loads((out / "config.json").read_text())
    assert document["provenance"]["way_back"]["steps"] == 2
    back = out / "way-back"
    header = json.loads((back / "config.json").read_text())
    assert header["kind"] == "adversarial2d" and header["settings"]["guide"] == "labels+source"
    tuned, start = read_weights(back), read_weights(tiny_translator)
    assert any(not torch.equal(tuned[k], start[k]) for k in start)  # fine-tuned, not copied
    assert "way-back" in (out / "MODEL_CARD.md").read_text()
    maps = write_phantom_maps(tmp_path / "maps", ("4CH",), size=48)
    source = tmp_path / "source.nii.gz"
    write_image(simulate_bmode(maps[0], 1), source)
    capsys.readouterr()
    translate = ["translate", "--model", str(back), "--images", str(source), "--labels"]
    assert main([*translate, str(tmp_path / "maps" / "m0.nii.gz"), "--out", str(tmp_path / "back")]) == 0
    assert any((tmp_path / "back").iterdir())


def test_a_work_folder_with_a_killed_writers_temporaries_resumes(tmp_path):
    """A run killed while writing its way back's cache leaves hidden temporaries of a work file: the next
    run of the same images resumes (the writer clears them); anything else is still refused."""
    from EchoSynthLib.adaptation.adapt import _work_for
    from EchoSynthLib.errors import InputError

    out = tmp_path / "model"
    work = _work_for(out, "key")
    (work / ".way-back-data.whole.echosynth-lock").write_text("")
    (work / ".way-back-data.x1.tmp").mkdir()
    assert _work_for(out, "key") == work and (work / "run.key").read_text() == "key"
    (work / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"notes\.txt"):
        _work_for(out, "key")
