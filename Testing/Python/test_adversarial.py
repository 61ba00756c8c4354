"""The few-step adversarial diffusion family (issue 15): the 4-step process against MONAI's closed form,
losses that move the right way, exact resume with two optimizers and R1, seeded 4-step sampling with the
map's geometry, the simulator guide, the package, and bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import ADVERSARIAL_RUN, TINY_ADVERSARIAL, edit_package_settings, package_with_settings

from EchoSynthLib.cli.main import main
from EchoSynthLib.data.io import read_image, read_label_map, write_image, write_label_map
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.engine.settings import RunSettings
from EchoSynthLib.errors import InputError
from EchoSynthLib.inference.generators import GeneratorSettings, open_generator
from EchoSynthLib.models.adversarial.config import AdversarialConfig
from EchoSynthLib.models.adversarial.network import DISCRIMINATOR
from EchoSynthLib.models.adversarial.pipeline import AdversarialModel
from EchoSynthLib.models.adversarial.process import FewStepProcess, vp_betas
from EchoSynthLib.models.adversarial.trainer import AdversarialTrainer
from EchoSynthLib.store.package import read_package_header

TINY = AdversarialConfig.from_dict(TINY_ADVERSARIAL)
RUN = RunSettings(**ADVERSARIAL_RUN)


@pytest.fixture(scope="module")
def trained(tiny_adversarial):
    return tiny_adversarial


def test_the_schedule_and_posterior_match_the_closed_form():
    process = FewStepProcess(4, 0.1, 20.0)
    s = np.arange(5) / 4
    alpha_bar = np.exp(-(0.1 * s + 0.5 * 19.9 * s**2))
    np.testing.assert_allclose(process.scheduler.alphas_cumprod.numpy(), alpha_bar[1:], rtol=1e-5)
    np.testing.assert_allclose(vp_betas(4).numpy(), 1 - alpha_bar[1:] / alpha_bar[:-1], rtol=1e-5)
    # The per-sample posterior draw equals MONAI's DDPMScheduler.step (x_0 predicted) with the same noise.
    x0, x_t = torch.rand(2, 1, 8, 8) * 2 - 1, torch.randn(2, 1, 8, 8)
    for variance in ("posterior", "beta"):
        process = FewStepProcess(4, 0.1, 20.0, variance)
        for j in range(4):
            expected = process.scheduler.step(x0, j, x_t, generator=torch.Generator().manual_seed(3))[0]
            noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
            got = process.posterior(x0, x_t, torch.full((2,), j), noise)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=f"{variance} step {j}")
    # A training pair: x^(t) ~ q(. | x_0) and one forward step give x^(t + 1) ~ q(. | x_0).
    x0 = torch.full((20000, 1, 1, 1), 0.5)
    draws = torch.Generator().manual_seed(0)  # seeded: the bounds below are ~3 standard errors wide
    for j in range(4):
        t = torch.full((20000,), j)
        noise, step_noise = torch.randn((2, *x0.shape), generator=draws)
        earlier, later = process.training_pair(x0, t, noise, step_noise)
        abar = process.scheduler.alphas_cumprod[j]
        assert abs(later.mean() - 0.5 * abar.sqrt()) < 0.02 and abs(later.var() - (1 - abar)) < 0.03
        if j == 0:
            assert torch.equal(earlier, x0)


HELD_G = {"learning_rate": 1e-12, "discriminator_learning_rate": 1e-3}
HELD_D = {"learning_rate": 1e-3, "discriminator_learning_rate": 1e-12}


@pytest.mark.parametrize(
    ("overrides", "losses", "factor"),
    [
        # A random discriminator responds little to one of its inputs: a slow but steady fall.
        (HELD_D | {"l1_weight": 0.0}, ("g_adversarial",), 0.99),
        (HELD_D, ("l1",), 0.9),
        # Without R1 (which holds a discriminator this small back for the first hundred steps).
        (HELD_G | {"r1_gamma": 0.0}, ("d_real", "d_fake"), 0.9),
    ],
    ids=["generator-fools", "generator-l1", "discriminator"],
)
def test_each_players_losses_fall_while_the_other_is_held(tiny_cache, tmp_path, overrides, losses, factor):
    """With the discriminator held, the generator's adversarial loss (alone) and its L1 on x_0 fall; with
    the generator held, the discriminator's losses on real and generated pairs fall."""

    run = RunSettings(max_steps=30, workers=0, log_every=10, val_every=1000, checkpoint_every=1000)
    config = TINY.with_overrides({"cosine_steps": 0, **overrides})
    AdversarialTrainer(tiny_cache, tmp_path / "run", config, "cpu", run).fit()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    for name in losses:
        values = [r[name] for r in log]
        assert values[-1] < factor * values[0], (name, values)
        # The generator's fall is slow, so it must also be steady (every logged mean below the last).
        assert name != "g_adversarial" or values[2] < values[1] < values[0], (name, values)


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_training_resumes_exactly_with_two_optimizers_r1_and_the_package_round_trips(
    tiny_cache, trained, tmp_path
):
    resumed_run = tmp_path / "resumed"
    AdversarialTrainer(tiny_cache, resumed_run, TINY, "cpu", RUN).fit(stop_at=3)
    resumed = AdversarialTrainer(tiny_cache, resumed_run, TINY, "cpu", RUN)
    assert resumed.state.step == 3
    resumed.fit()
    for name in ("model", DISCRIMINATOR):
        reference = trained.state.networks[name].state_dict()
        for key, value in resumed.state.networks[name].state_dict().items():
            torch.testing.assert_close(value, reference[key], rtol=0, atol=0, msg=f"{name}.{key}")
        expected = trained.state.optimizers[name].state_dict()
        got = resumed.state.optimizers[name].state_dict()
        assert got["param_groups"][0]["lr"] == expected["param_groups"][0]["lr"] < TINY.learning_rate
        for index, entry in got["state"].items():
            torch.testing.assert_close(
                entry["exp_avg_sq"], expected["state"][index]["exp_avg_sq"], rtol=0, atol=0
            )
    for key, value in resumed.state.ema.state_dict().items():
        torch.testing.assert_close(value, trained.state.ema.state_dict()[key], rtol=0, atol=0, msg=key)
    log = (trained.run / "log.jsonl").read_text()
    assert '"r1"' in log  # the R1 penalty ran (every 2 steps here)
    model = AdversarialModel.load(trained.run / "model", "cpu")
    for key, value in trained.state.ema.module.state_dict().items():
        assert torch.equal(model.generator.state_dict()[key], value), key
    header = read_package_header(trained.run / "model")
    assert header["kind"] == "adversarial2d"
    assert {c["name"] for c in header["components"]} == {"model", DISCRIMINATOR}
    assert (trained.run / "samples" / "step_000006.png").is_file()


def test_four_step_samples_are_seeded_and_keep_the_maps_geometry(trained, phantom_2d, phantom_3d):
    labels = phantom_2d.labels
    moved = Volume(labels.array, (0.7, 0.45, 1.0), (12.0, -3.0, 4.0), (0, 1, 0, -1, 0, 0, 0, 0, 1))
    model = AdversarialModel.load(trained.run / "model", "cpu")
    steps = []
    three = model.synthesize(moved, n=3, seed=5, progress=lambda done, total: steps.append((done, total)))
    assert steps[-1] == (4, 4) and len(steps) == 4  # T = 4 generator calls
    for image in three:
        assert image.same_geometry(moved) and image.array.dtype == np.uint8
        assert not image.array[moved.array == Structure.BACKGROUND.label].any()
    again = model.synthesize(moved, n=1, seed=6)
    assert np.array_equal(three[1].array, again[0].array)
    assert not np.array_equal(three[0].array, three[1].array)
    plane = model.synthesize(phantom_3d.labels, n=1)[0]
    assert plane.array.shape[0] == 1 and plane.array.shape[1:] == phantom_3d.labels.array.shape[1:]
    # Through the Generator interface (synthesize, the worker, the Slicer panel).
    generator = open_generator(GeneratorSettings(str(trained.run / "model"), device="cpu"))
    assert (
        generator.generate(generator.prepare(moved), 1, seed=6)[0].array.tobytes() == again[0].array.tobytes()
    )


def test_a_simulator_guided_model_trains_and_synthesizes_from_the_cli(
    tiny_cache, phantom_2d, tmp_path, capsys
):
    config = TINY.with_overrides({"guide": "labels+simulator"})
    trainer = AdversarialTrainer(tiny_cache, tmp_path / "run", config, "cpu", RUN)
    trainer.fit()
    assert (tmp_path / "run" / "guides_train.safetensors").is_file()
    write_label_map(phantom_2d.labels, tmp_path / "map.nii.gz")
    args = [
        "synthesize",
        "--model",
        str(tmp_path / "run" / "model"),
        "--labels",
        str(tmp_path / "map.nii.gz"),
    ]
    assert main([*args, "--n", "2", "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    images = sorted((tmp_path / "out").iterdir())
    assert len(images) == 2 and read_image(images[0]).same_geometry(phantom_2d.labels)
    # Sampler options mean nothing to a 4-step model: said, not silently ignored.
    assert main([*args, "--steps", "10", "--out", str(tmp_path / "out2")]) == 0
    assert "not used" in capsys.readouterr().err


def test_bad_inputs_are_refused_with_clear_errors(trained, tiny_cache, tmp_path, capsys):
    model = AdversarialModel.load(trained.run / "model", "cpu")
    with pytest.raises(InputError, match=r"no cardiac structure|heart"):
        model.synthesize(Volume.from_2d(np.zeros((32, 32), np.uint8), (1.0, 1.0)))
    with pytest.raises(InputError, match="guide must be"):
        TINY.with_overrides({"guide": "images"})
    with pytest.raises(InputError, match="beta_max"):
        TINY.with_overrides({"beta_max": 0.05})
    with pytest.raises(InputError, match="this model needs 64x64"):
        AdversarialTrainer(tiny_cache, tmp_path / "run", TINY.with_overrides({"image_size": 64}), "cpu", RUN)
    assert not (tmp_path / "run").exists()
    with pytest.raises(InputError, match="no such model folder"):
        AdversarialModel.load(trained.run.parent / "nothing", "cpu")
    # A package of another kind names both kinds.
    from EchoSynthLib.store.package import save_package

    save_package(tmp_path / "other", "sdm2d", {}, {"w": torch.zeros(1)}, "card")
    with pytest.raises(InputError, match=r"sdm2d.*adversarial2d|adversarial2d.*sdm2d"):
        AdversarialModel.load(tmp_path / "other", "cpu")


def test_a_source_guided_model_translates_from_the_image_itself(tiny_cache, phantom_2d, tmp_path, capsys):
    """SynDiff's setting: trained with the stand-in scanner's look of each image as its guide, the model's
    translation depends on the source image (same map and seed, another image: another output); it cannot
    synthesize from a map alone."""
    from EchoSynthLib.simulation import simulate_bmode

    config = TINY.with_overrides({"guide": "labels+source"})
    AdversarialTrainer(tiny_cache, tmp_path / "run", config, "cpu", RUN).fit()
    assert (tmp_path / "run" / "samples" / "step_000006.png").is_file()
    model = AdversarialModel.load(tmp_path / "run" / "model", "cpu")
    labels = phantom_2d.labels
    one, other = simulate_bmode(labels, seed=1), simulate_bmode(labels, seed=2)
    first = model.synthesize(labels, seed=3, source=one)[0]
    assert first.same_geometry(labels)
    assert np.array_equal(first.array, model.synthesize(labels, seed=3, source=one)[0].array)
    assert not np.array_equal(first.array, model.synthesize(labels, seed=3, source=other)[0].array)
    with pytest.raises(InputError, match="translates images"):
        model.synthesize(labels)
    write_label_map(labels, tmp_path / "map.nii.gz")
    args = [
        "synthesize",
        "--model",
        str(tmp_path / "run" / "model"),
        "--labels",
        str(tmp_path / "map.nii.gz"),
    ]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert "translates images" in capsys.readouterr().err
    # echosynth translate gives it each image: same map and seed, two images, two translations.
    for name, image in (("one", one), ("other", other)):
        write_image(image, tmp_path / name / "echo.nii.gz")
        command = ["translate", "--model", str(tmp_path / "run" / "model"), "--images", str(tmp_path / name)]
        command += ["--labels", str(tmp_path / "map.nii.gz"), "--out", str(tmp_path / f"{name}_out")]
        assert main(command) == 0, capsys.readouterr().err
    translated = [
        read_image(tmp_path / f"{n}_out" / "echo_translated.nii.gz").array for n in ("one", "other")
    ]
    assert not np.array_equal(*translated)


def test_random_looks_hold_the_stand_in_and_camus_own_look_and_differ_per_image():
    from EchoSynthLib.augmentation.scanner_look import LOOK_RANGES, STAND_IN, ScannerLook, random_looks

    generator = torch.Generator().manual_seed(0)
    images = torch.rand((2, 1, 24, 24), generator=generator) * 2 - 1
    inside = images > -0.9

    def at(**look: float) -> torch.Tensor:  # settings not named: as CAMUS's own scanner (the defaults)
        look = {"lateral_blur": ScannerLook.lateral_blur, "resample": ScannerLook.resample, **look}
        return torch.tensor([(look[n] - low) / (high - low) for n, (low, high) in LOOK_RANGES.items()])

    stand_in = at(
        blur=STAND_IN.blur, gamma=STAND_IN.gamma, gain=STAND_IN.gain, offset=STAND_IN.offset, depth_gain=0.0
    )
    torch.testing.assert_close(random_looks(images, inside, stand_in.expand(2, -1)), STAND_IN(images, inside))
    own = at(blur=0.0, gamma=1.0, gain=1.0, offset=0.0, depth_gain=0.0).expand(2, -1)
    torch.testing.assert_close(random_looks(images, inside, own), torch.where(inside, images, -1.0))
    mixed = random_looks(
        images, inside, torch.stack([stand_in, at(blur=0.0, gamma=1.5, gain=0.7, offset=0.0, depth_gain=0.3)])
    )
    torch.testing.assert_close(mixed[:1], STAND_IN(images[:1], inside[:1]))
    assert not torch.allclose(mixed[1:], STAND_IN(images[1:], inside[1:]), atol=0.05)
    with pytest.raises(ValueError, match="uniforms must be"):
        random_looks(images, inside, stand_in.expand(3, -1))


def test_a_source_guided_run_trains_on_random_looks_and_validates_on_the_stand_in(tiny_cache, tmp_path):
    """Each training step shows the source in looks drawn by the step's seeded draws (so a resumed run
    replays them); validation and the sample grid show the fixed stand-in scanner."""
    from EchoSynthLib.augmentation.scanner_look import STAND_IN

    config = TINY.with_overrides({"guide": "labels+source"})
    trainer = AdversarialTrainer(tiny_cache, tmp_path / "run", config, "cpu", RunSettings(**ADVERSARIAL_RUN))
    items = [trainer.train_set[i] for i in range(2)]
    batch = {k: torch.stack([x[k] for x in items]) for k in ("image", "labels")}
    batch["case_id"] = [x["case_id"] for x in items]
    first, again, later = (trainer._draws(step, 0, 2, train=True) for step in (3, 3, 4))
    for draws in (first, again, later):
        draws["flip"][:] = False
    guides = [trainer._inputs(batch, d, "train", training=True)[2] for d in (first, again, later)]
    assert torch.equal(guides[0], guides[1]) and not torch.allclose(guides[0], guides[2], atol=0.05)
    image, seg, fixed = trainer._inputs(batch, first, "val")
    inside = seg[:, trainer.config.classes.structures.index(Structure.BACKGROUND)][:, None] < 0.5
    torch.testing.assert_close(fixed, STAND_IN(image, inside))


def test_the_stand_in_scanner_look_widens_speckle_and_keeps_black_outside():
    from EchoSynthLib.augmentation.scanner_look import STAND_IN

    generator = torch.Generator().manual_seed(0)
    images = torch.rand((2, 1, 48, 48), generator=generator) * 2 - 1
    images[:, :, :, :8] = -1  # outside the sector
    looked = STAND_IN(images)
    assert looked.shape == images.shape and looked.min() >= -1 and looked.max() <= 1
    assert (looked[:, :, :, :8] == -1).all()

    def neighbour_correlation(x: torch.Tensor) -> float:
        inner = x[:, 0, :, 10:]
        a, b = inner[:, :, :-1].flatten(), inner[:, :, 1:].flatten()
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    assert neighbour_correlation(looked) > neighbour_correlation(images) + 0.3  # coarser speckle


def test_lateral_blur_and_a_coarser_grid_widen_speckle_across_the_beams_and_keep_the_grid():
    """``lateral_blur`` smooths across the beams (along rows) more than along them; ``resample`` 0.5 is a
    scanner grid of half the model's (EchoNet's 112 of 224): the image keeps its size but loses the detail
    that the coarser grid cannot hold."""
    from EchoSynthLib.augmentation.scanner_look import ScannerLook

    generator = torch.Generator().manual_seed(0)
    images = torch.rand((1, 1, 48, 48), generator=generator) * 2 - 1
    inside = torch.ones_like(images, dtype=torch.bool)
    plain = dict(blur=0.0, gamma=1.0, gain=1.0, offset=0.0)

    def correlation(x: torch.Tensor, dim: int) -> float:
        inner = x[0, 0, 8:-8, 8:-8]
        a, b = inner.narrow(dim, 0, inner.shape[dim] - 1), inner.narrow(dim, 1, inner.shape[dim] - 1)
        return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])

    lateral = ScannerLook(**plain, lateral_blur=1.5)(images, inside)
    assert correlation(lateral, 1) > correlation(lateral, 0) + 0.3  # across the beams more than along
    coarse = ScannerLook(**plain, resample=0.5)(images, inside)
    assert coarse.shape == images.shape
    assert correlation(coarse, 0) > 0.3 and correlation(coarse, 1) > 0.3 and abs(correlation(images, 0)) < 0.1
    torch.testing.assert_close(ScannerLook(**plain)(images, inside), images)  # CAMUS's own look: unchanged


def test_the_unseen_look_lies_outside_the_training_family_and_darkens_with_depth():
    """``UNSEEN`` (the measure of translation beyond training) has settings outside ``LOOK_RANGES`` and a
    depth gain: on a uniform image its deep rows come out darker than its shallow ones; without the depth
    gain every row is alike."""
    from dataclasses import replace

    from EchoSynthLib.augmentation.scanner_look import LOOK_RANGES, UNSEEN

    outside = [n for n, (low, high) in LOOK_RANGES.items() if not low <= getattr(UNSEEN, n) <= high]
    assert outside and UNSEEN.depth_gain < 0
    uniform = torch.zeros((1, 1, 64, 64))
    inner = slice(12, 52)  # away from the border, where the blur takes in the black beyond the image
    rows = UNSEEN(uniform, torch.ones_like(uniform, dtype=torch.bool))[0, 0, inner, inner].mean(dim=1)
    assert (rows[1:] < rows[:-1]).all() and rows[0] - rows[-1] > 0.1
    flat = replace(UNSEEN, depth_gain=0.0)(uniform, torch.ones_like(uniform, dtype=torch.bool))[
        0, 0, inner, inner
    ]
    torch.testing.assert_close(flat, flat[:1].expand_as(flat))


def test_process_runs_only_the_last_steps_from_a_later_start():
    process = FewStepProcess(4, 0.1, 20.0)
    seen = []

    def predict(x, t):
        seen.append(int(t[0]))
        return torch.zeros_like(x)

    noise = torch.randn((1, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    out = process.denoise(predict, noise, lambda j: noise, start=2)
    assert seen == [1, 0] and torch.equal(out, torch.zeros_like(out))
    for start in (0, 5):
        with pytest.raises(InputError, match=r"starts at step 1\.\.4"):
            process.denoise(predict, noise, lambda j: noise, start=start)


class _Spy(torch.nn.Module):
    """Records what the generator is given (x_t, t) and answers as the wrapped generator."""

    def __init__(self, generator: torch.nn.Module) -> None:
        super().__init__()
        self.generator, self.calls = generator, []

    def forward(self, x_t, t, z, guides, seg):
        self.calls.append((x_t.clone(), t.clone()))
        return self.generator(x_t, t, z, guides, seg)


def test_a_start_strength_runs_the_last_steps_from_the_simulators_image(
    trained, phantom_2d, tmp_path, capsys
):
    """Below strength 1 the chain starts at x^(k), k = round(strength * T), drawn from the simulator's image
    of the map (seed k for image k) with the image's own x_T as the noise, and only k generator calls run;
    seeded; the package default applies; the CLI and the Generator interface pass it; bad strengths are
    refused and write nothing."""
    from EchoSynthLib.inference.grids import model_conditioning
    from EchoSynthLib.models.adversarial.guides import on_grid, simulated

    model = AdversarialModel.load(trained.run / "model", "cpu")
    spy = _Spy(model.generator)
    model.generator = spy
    labels = phantom_2d.labels
    for strength, count in ((1.0, 4), (0.5, 2), (0.25, 1), (0.01, 1)):
        spy.calls.clear()
        model.synthesize(labels, seed=5, strength=strength)
        assert [int(t[0]) for _, t in spy.calls] == list(range(count - 1, -1, -1)), strength
    # The entry of a 2-step chain: the simulator's image (seed 5) drawn into x^(2) with x_T's noise.
    spy.calls.clear()
    half = model.synthesize(labels, seed=5, strength=0.5)[0]
    one_hot, grid = model_conditioning(model.prepare(labels), model.config.classes, (32, 32))
    start = simulated(on_grid(one_hot, model.config.classes, grid), 5)[None]
    noise = torch.randn((1, 1, 32, 32), generator=torch.Generator().manual_seed(5))
    expected = model.process.noisy(start, torch.tensor([1]), noise)
    torch.testing.assert_close(spy.calls[0][0], expected)
    assert np.array_equal(half.array, model.synthesize(labels, seed=5, strength=0.5)[0].array)
    assert not np.array_equal(half.array, model.synthesize(labels, seed=5)[0].array)
    # The package's default start strength, and an explicit 1 over it.
    package = package_with_settings(trained.run / "model", tmp_path / "half", start_strength=0.5)
    defaulted = AdversarialModel.load(package, "cpu")
    assert np.array_equal(defaulted.synthesize(labels, seed=5)[0].array, half.array)
    assert np.array_equal(
        defaulted.synthesize(labels, seed=5, strength=1.0)[0].array, model.synthesize(labels, seed=5)[0].array
    )
    generator = open_generator(GeneratorSettings(str(package), device="cpu"))
    assert (
        "2 steps from the simulator's image" in generator.description
        and "strength 0.5" in generator.description
    )
    assert generator.generate(generator.prepare(labels), 1, seed=5)[0].array.tobytes() == half.array.tobytes()
    # The command line: --strength gives the same image; bad strengths exit 2 and write nothing.
    write_label_map(labels, tmp_path / "map.nii.gz")
    args = ["synthesize", "--model", str(trained.run / "model"), "--labels", str(tmp_path / "map.nii.gz")]
    assert main([*args, "--seed", "5", "--strength", "0.5", "--out", str(tmp_path / "out")]) == 0
    (written,) = (tmp_path / "out").iterdir()
    from_file = model.synthesize(read_label_map(tmp_path / "map.nii.gz"), seed=5, strength=0.5)[0]
    assert np.array_equal(read_image(written).array, from_file.array)
    for bad in ("0", "1.5", "nan"):
        assert main([*args, "--strength", bad, "--out", str(tmp_path / f"bad{bad}")]) == 2
        assert "strength" in capsys.readouterr().err and not (tmp_path / f"bad{bad}").exists()


def test_a_translation_below_strength_one_starts_from_the_source_image(trained, phantom_2d):
    """A map-guided model translating an image: below strength 1 the output depends on the source image
    (same map and seed, another image: another output); at strength 1 it is generated from the map alone."""
    from EchoSynthLib.simulation import simulate_bmode

    labels = phantom_2d.labels
    one, other = simulate_bmode(labels, seed=1), simulate_bmode(labels, seed=2)
    generator = open_generator(GeneratorSettings(str(trained.run / "model"), device="cpu", strength=0.5))
    prepared = generator.prepare(labels)
    first = generator.translate(one, prepared, seed=3)
    assert first.same_geometry(labels)
    assert np.array_equal(first.array, generator.translate(one, prepared, seed=3).array)
    assert not np.array_equal(first.array, generator.translate(other, prepared, seed=3).array)
    whole = open_generator(GeneratorSettings(str(trained.run / "model"), device="cpu"))
    assert np.array_equal(
        whole.translate(one, prepared, seed=3).array, whole.translate(other, prepared, 3).array
    )


def _tiny_sdm(tiny_cache, folder):
    """A 2-step SDM package on ``tiny_cache`` with a U-Net the tiny adversarial settings can hold."""
    from EchoSynthLib.models.sdm.config import SDMConfig
    from EchoSynthLib.models.sdm.trainer import SDMTrainer

    network = {"channels": (8, 16), "attention_levels": (False, False), "num_head_channels": 8}
    config = SDMConfig.preset(32, **network, spade_channels=8, norm_groups=8, batch_size=4)
    run = RunSettings(max_steps=2, workers=0, val_every=1000, checkpoint_every=1000, sample_every=1000)
    SDMTrainer(tiny_cache, folder, config, "cpu", run).fit()
    return folder / "model"


def test_a_run_started_from_an_sdm_is_that_sdm_at_its_first_step(tiny_cache, phantom_2d, tmp_path):
    """``--set init=<SDM package>``: the generator takes the SDM's U-Net and predicts noise; step j is
    embedded as the SDM's timestep with the nearest abar; at the start its x_0 is the SDM's one-jump
    estimate whatever z and the image guide are (their weights start at zero); the run trains, resumes
    and counts the SDM's steps in its own; a run continuing its package takes its settings; an SDM of
    another grid is refused."""
    from EchoSynthLib.models.sdm.pipeline import Synthesizer

    sdm_folder = _tiny_sdm(tiny_cache, tmp_path / "sdm")
    sdm = Synthesizer.load(sdm_folder, "cpu")
    settings = RunSettings(**ADVERSARIAL_RUN | {"init": str(sdm_folder)})
    config = TINY.with_overrides({"guide": "labels+simulator", "channels": [16, 32]})
    trainer = AdversarialTrainer(tiny_cache, tmp_path / "run", config, "cpu", settings)
    config = trainer.config
    assert config.prediction == "epsilon" and config.channels == (8, 16)
    theirs = sdm.diffusion.schedule.alphas_cumprod.numpy()
    mine = trainer.process.scheduler.alphas_cumprod.numpy()
    assert config.timesteps == tuple(int(np.abs(np.log(theirs) - np.log(a)).argmin()) for a in mine)
    generator = trainer.state.networks["model"]
    draws = torch.Generator().manual_seed(0)
    x_t = torch.randn((4, 1, 32, 32), generator=draws)
    t = torch.tensor([0, 1, 2, 3])
    seg = torch.nn.functional.one_hot(torch.randint(0, 5, (4, 32, 32), generator=draws), 5)
    seg = seg.permute(0, 3, 1, 2).float()
    z, guides = torch.randn((2, 4, 1, 32, 32), generator=draws)
    with torch.no_grad():
        got = generator(x_t, t, z, guides, seg)
        noise = sdm.model(x_t, torch.tensor(config.timesteps)[t], seg)[:, :1]
        abar = torch.from_numpy(mine)[t].view(-1, 1, 1, 1)
        torch.testing.assert_close(got, ((x_t - (1 - abar).sqrt() * noise) / abar.sqrt()).clamp(-1, 1))
        torch.testing.assert_close(generator(x_t, t, z * 3, guides * 0, seg), got)
        torch.testing.assert_close(trainer.state.ema.module(x_t, t, z, guides, seg), got)
    trainer.fit()
    header = read_package_header(tmp_path / "run" / "model")
    assert header["provenance"]["trained_steps"] == 2 + 6
    assert header["provenance"]["initialised_from"]["package"] == str(sdm_folder)
    guided = TINY.with_overrides({"guide": "labels+simulator"})
    assert AdversarialTrainer(tiny_cache, tmp_path / "run", guided, "cpu", settings).state.step == 6
    # Continuing the package (``init`` = an adversarial package) takes its networks and process settings
    # with its weights, whatever the new run's own defaults say.
    settings = RunSettings(**ADVERSARIAL_RUN | {"init": str(tmp_path / "run" / "model")})
    continued = AdversarialTrainer(tiny_cache, tmp_path / "continued", TINY, "cpu", settings)
    assert continued.config.prediction == "epsilon" and continued.config.guide == "labels+simulator"
    assert continued.config.timesteps == config.timesteps and continued.config.channels == (8, 16)
    shipped = AdversarialModel.load(tmp_path / "run" / "model", "cpu").generator
    with torch.no_grad():
        torch.testing.assert_close(
            continued.state.networks["model"](x_t, t, z, guides, seg), shipped(x_t, t, z, guides, seg)
        )
    # A run that asks for another guide with as many image channels keeps it: the simulator-guided
    # package goes on as a source-guided model, from the same weights.
    sourced = TINY.with_overrides({"guide": "labels+source"})
    retargeted = AdversarialTrainer(tiny_cache, tmp_path / "retargeted", sourced, "cpu", settings)
    assert retargeted.config.guide == "labels+source" and retargeted.config.prediction == "epsilon"
    with torch.no_grad():
        torch.testing.assert_close(
            retargeted.state.networks["model"](x_t, t, z, guides, seg), shipped(x_t, t, z, guides, seg)
        )
    image = AdversarialModel.load(tmp_path / "run" / "model", "cpu").synthesize(
        phantom_2d.labels, seed=1, strength=0.25
    )[0]
    assert image.array.dtype == np.uint8
    # An SDM of another grid starts a run on this cache's grid with the same (convolutional) network.
    other = tmp_path / "sdm64"
    shutil.copytree(sdm_folder, other)
    edit_package_settings(other, lambda settings: settings.update(image_size=64))
    settings = RunSettings(**ADVERSARIAL_RUN | {"init": str(other)})
    regridded = AdversarialTrainer(tiny_cache, tmp_path / "run2", guided, "cpu", settings)
    assert regridded.config.image_size == 32 and regridded.config.timesteps == config.timesteps
    with torch.no_grad():
        torch.testing.assert_close(regridded.state.networks["model"](x_t, t, z, guides, seg), got)
    with pytest.raises(InputError, match="one timestep per step"):
        TINY.with_overrides({"timesteps": [1, 2]})
    with pytest.raises(InputError, match="prediction must be"):
        TINY.with_overrides({"prediction": "v"})


def _cache_of_size(tmp_path, size: int):
    """A small phantom cache of ``size`` x ``size`` images (four cases)."""
    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.cache.store import build_cache
    from EchoSynthLib.datasets import scan_dataset
    from EchoSynthLib.preprocessing.prepare import PrepareSettings
    from EchoSynthLib.simulation import simulate_bmode

    root = tmp_path / "phantoms"
    for seed in range(4):
        phantom = phantom_label_map("4CH", "ED", seed=seed, grid=PhantomGrid.for_view("4CH", size=32))
        write_image(simulate_bmode(phantom.labels, seed=seed), root / f"p{seed}.nii.gz")
        write_label_map(phantom.labels, root / f"p{seed}_label.nii.gz")
    build_cache(scan_dataset("folder", root), tmp_path / "cache", PrepareSettings(size=(size, size)))
    return tmp_path / "cache"


def test_a_package_goes_on_at_another_grid(trained, phantom_2d, tmp_path):
    """``--set init=<package of 32x32>`` on a 16x16 cache: the run works on the cache's grid, the generator
    is the package's (the same outputs at the new size), the discriminator takes every tensor but its
    classifier head (sized by the grid), which starts afresh; the run trains and its package samples on
    the new grid. Fails where the package's grid was taken (the run then asked for 32x32 images)."""
    from EchoSynthLib.models.adversarial.network import Discriminator, GanGenerator

    cache = _cache_of_size(tmp_path, 16)
    package = trained.run / "model"
    settings = RunSettings(**ADVERSARIAL_RUN | {"init": str(package), "max_steps": 1})
    config = TINY.with_overrides({"image_size": 16})
    trainer = AdversarialTrainer(cache, tmp_path / "run", config, "cpu", settings)
    assert trainer.config.image_size == 16
    draws = torch.Generator().manual_seed(0)
    x_t = torch.randn((2, 1, 16, 16), generator=draws)
    t = torch.tensor([0, 3])
    seg = torch.nn.functional.one_hot(torch.randint(0, 5, (2, 16, 16), generator=draws), 5)
    seg = seg.permute(0, 3, 1, 2).float()
    z = torch.randn((2, 1, 16, 16), generator=draws)
    guides = x_t[:, :0]
    shipped = AdversarialModel.load(package, "cpu").generator
    with torch.no_grad():
        torch.testing.assert_close(
            trainer.state.networks["model"](x_t, t, z, guides, seg), shipped(x_t, t, z, guides, seg)
        )
    theirs = trained.state.networks[DISCRIMINATOR].state_dict()
    torch.manual_seed(trainer.config.seed)  # a fresh run's initialisation, in the trainer's order
    GanGenerator(trainer.config)
    fresh = Discriminator(trainer.config).state_dict()
    mine = trainer.state.networks[DISCRIMINATOR].state_dict()
    head = [k for k in mine if k.startswith("encoder.out.")]
    assert head and mine["encoder.out.0.weight"].shape != theirs["encoder.out.0.weight"].shape
    for name, value in mine.items():
        torch.testing.assert_close(value, fresh[name] if name in head else theirs[name])
    trainer.fit()
    header = read_package_header(tmp_path / "run" / "model")
    assert header["settings"]["image_size"] == 16
    assert header["provenance"]["trained_steps"] == 6 + 1
    image = AdversarialModel.load(tmp_path / "run" / "model", "cpu").synthesize(phantom_2d.labels, seed=0)[0]
    assert image.array.dtype == np.uint8 and image.array.shape == phantom_2d.labels.array.shape


def test_a_run_from_an_installed_model_records_its_name_and_takes_it_to_the_cache_grid(tiny_cache, tmp_path):
    """``--set init=adversarial-camus64`` (by name) on a 32x32 cache: the shipped 64x64 package's networks
    and process with this cache's grid, its discriminator's head afresh; the run records the model's name,
    not this machine's folder for it (which the shipped packages once carried)."""
    settings = RunSettings(**ADVERSARIAL_RUN | {"init": "adversarial-camus64"})
    trainer = AdversarialTrainer(tiny_cache, tmp_path / "run", TINY, "cpu", settings)
    assert trainer.config.image_size == 32 and trainer.config.guide == "labels+simulator"
    record = trainer.initialised_from
    assert record["package"] == "adversarial-camus64" and record["trained_steps"] == 3850
    assert record["networks"] == ["model", f"{DISCRIMINATOR} (its head afresh)"]
    assert json.loads((tmp_path / "run" / "init.json").read_text())["package"] == "adversarial-camus64"


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_synthesize_batches_across_maps_with_each_images_own_seed(
    tiny_adversarial, tmp_path, capsys, monkeypatch
):
    """``synthesize`` over several maps calls the generator on one batch across maps (issue 30), from the
    simulator's image below strength 1 too, and each image is the one its map would get alone with its
    seed (the run's numbering), within one grey level."""
    from conftest import assert_within_one_grey_level, write_phantom_maps

    import EchoSynthLib.models.adversarial.pipeline as pipeline
    from EchoSynthLib.models.adversarial.pipeline import AdversarialModel

    package = package_with_settings(
        tiny_adversarial.run / "model", tmp_path / "from-simulator", start_strength=0.5
    )
    maps = write_phantom_maps(tmp_path / "maps", ("4CH", "2CH", "4CH"), phase="ES")
    batches, draw = [], pipeline.denoise

    def counting_draw(generator, process, config, seg, *args, **kwargs):
        batches.append(seg.shape[0])
        return draw(generator, process, config, seg, *args, **kwargs)

    monkeypatch.setattr(pipeline, "denoise", counting_draw)
    command = ["synthesize", "--model", str(package), "--labels", str(tmp_path / "maps"), "--n", "2"]
    assert main([*command, "--seed", "3", "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    assert batches == [6]  # 3 maps x 2 images in one batch
    model = AdversarialModel.load(package, "cpu")
    for index, labels in enumerate(maps):
        alone = model.synthesize(labels, n=2, seed=3 + 2 * index)
        for k in range(2):
            drawn = read_image(tmp_path / "out" / f"m{index}_synth{k:02d}.nii.gz")
            assert drawn.same_geometry(labels)
            assert_within_one_grey_level(drawn.array, alone[k].array)


def test_fewer_steps_embed_the_longer_chains_nearest_levels():
    """A 2-step chain's steps end at s = 1/2 and 1 of the same VP schedule: the 4-step chain's steps 2 and
    4; one step is the last; 3 steps take the nearest of 1/4..1 for 1/3, 2/3, 1."""
    from EchoSynthLib.models.adversarial.trainer import fewer_steps

    assert fewer_steps((480, 816, 961, 995), 2) == (816, 995)
    assert fewer_steps((480, 816, 961, 995), 1) == (995,)
    assert fewer_steps((480, 816, 961, 995), 3) == (480, 961, 995)
    four, two = FewStepProcess(4, 0.1, 20.0), FewStepProcess(2, 0.1, 20.0)
    torch.testing.assert_close(two.scheduler.alphas_cumprod, four.scheduler.alphas_cumprod[1::2])


def test_a_run_distils_a_package_into_fewer_steps(trained, tiny_cache, phantom_2d, tmp_path):
    """``--set steps=2`` from a 4-step package: the run keeps its 2 steps (the package's would be taken
    otherwise), each embedded as the package's step at the same noise level, the generator's weights the
    package's; the run trains and its package draws an image in 2 generator calls. Fails where the package's
    steps override the run's."""
    package = trained.run / "model"
    theirs = read_package_header(package)["settings"]
    assert theirs["steps"] == 4
    settings = RunSettings(**ADVERSARIAL_RUN | {"init": str(package), "max_steps": 1})
    trainer = AdversarialTrainer(
        tiny_cache, tmp_path / "run", TINY.with_overrides({"steps": 2}), "cpu", settings
    )
    four = AdversarialConfig.from_dict(theirs).embedded_steps
    assert trainer.config.steps == 2 and trainer.config.embedded_steps == (four[1], four[3])
    shipped = AdversarialModel.load(package, "cpu").generator.state_dict()
    for name, value in trainer.state.networks["model"].state_dict().items():
        if name in shipped and not name.startswith("embedded"):
            torch.testing.assert_close(value, shipped[name])
    trainer.fit()
    model = AdversarialModel.load(tmp_path / "run" / "model", "cpu")
    calls = []
    model.generator.register_forward_hook(lambda *_: calls.append(1))
    image = model.synthesize(phantom_2d.labels, seed=0)[0]
    assert len(calls) == 2 and image.array.shape == phantom_2d.labels.array.shape


def test_a_folded_generator_runs_its_unet_on_a_smaller_grid(tiny_cache, phantom_2d, tmp_path):
    """``fold=2``: the U-Net sees the inputs folded 2x2 into channels on the half grid and its output
    unfolds to the image grid; such a model trains, saves and samples images on the map's grid. Fails where
    the fold is not applied (the U-Net then runs on the full grid)."""
    config = TINY.with_overrides({"fold": 2})
    with pytest.raises(InputError, match="divisible"):
        TINY.with_overrides({"fold": 3})
    trainer = AdversarialTrainer(tiny_cache, tmp_path / "run", config, "cpu", RUN)
    generator = trainer.state.networks["model"]
    seen = []
    generator.unet.conv_in.register_forward_hook(lambda _, inputs, __: seen.append(inputs[0].shape))
    x_t = torch.randn(2, 1, 32, 32)
    seg = torch.zeros(2, 5, 32, 32)
    seg[:, 0] = 1
    out = generator(x_t, torch.tensor([0, 3]), torch.randn(2, 1, 32, 32), x_t[:, :0], seg)
    assert out.shape == (2, 1, 32, 32) and seen == [(2, 8, 16, 16)]
    trainer.fit()
    model = AdversarialModel.load(tmp_path / "run" / "model", "cpu")
    assert model.config.fold == 2
    image = model.synthesize(phantom_2d.labels, seed=0)[0]
    assert image.array.shape == phantom_2d.labels.array.shape
    # A run from the folded package takes its fold (as its other network settings); from an SDM a fold
    # is refused (the SDM's first and last layers do not fit a folded U-Net).
    again = RunSettings(**ADVERSARIAL_RUN | {"init": str(tmp_path / "run" / "model")})
    assert AdversarialTrainer(tiny_cache, tmp_path / "again", TINY, "cpu", again).config.fold == 2
    sdm = RunSettings(**ADVERSARIAL_RUN | {"init": str(_tiny_sdm(tiny_cache, tmp_path / "sdm"))})
    with pytest.raises(InputError, match="folded generator"):
        AdversarialTrainer(tiny_cache, tmp_path / "from-sdm", config, "cpu", sdm)
    assert not (tmp_path / "from-sdm").exists()
