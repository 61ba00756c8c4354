"""The 2D semantic diffusion model, tiny and on CPU: loss, training, resume, packages, samplers, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import assert_within_one_grey_level, edit_package_settings, package_with_settings

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.cli.main import main
from EchoSynthLib.data.io import write_label_map
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.diffusion.gaussian import GaussianDiffusion
from EchoSynthLib.diffusion.samplers import _denoiser, denoise
from EchoSynthLib.engine.settings import RUN_SETTING_NAMES, RunSettings
from EchoSynthLib.errors import InputError, UnknownLabelError
from EchoSynthLib.models.sdm.config import SDMConfig
from EchoSynthLib.models.sdm.pipeline import Synthesizer
from EchoSynthLib.models.sdm.trainer import SDMTrainer
from EchoSynthLib.store.package import CONFIG

SIZE = 32  # the tiny_cache fixture (conftest) is prepared at this size
TINY = {
    "channels": (32, 32, 32),
    "attention_levels": (False, False, True),
    "num_head_channels": 32,
    "spade_channels": 16,
    "batch_size": 4,
    "learning_rate": 2e-3,
    "ema_decay": 0.9,
}
RUN = {
    "workers": 0,
    "log_every": 5,
    "val_every": 10,
    "checkpoint_every": 5,
    "sample_every": 1000,
    "sample_steps": 2,
}


def _config(**overrides) -> SDMConfig:
    return SDMConfig.preset(SIZE, **{**TINY, **overrides})


def _run(**overrides) -> RunSettings:
    return RunSettings.from_dict({**RUN, **overrides})


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    trainer = SDMTrainer(tiny_cache, run, _config(), "cpu", _run(max_steps=24, log_every=4, val_every=8))
    trainer.fit()
    return trainer


def test_vlb_vanishes_for_the_true_noise_and_posterior_variance():
    diffusion = GaussianDiffusion()
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand((6, 1, 8, 8), generator=generator) * 2 - 1
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.tensor([1, 10, 100, 500, 900, 999])
    x_t = diffusion.q_sample(x0, t, noise)
    perfect = torch.cat([noise, -torch.ones_like(noise)], dim=1)  # v = -1: the posterior variance
    losses = diffusion.training_losses(perfect, x0, x_t, t, noise, vlb_weight=0.001)
    assert torch.allclose(losses["mse"], torch.zeros(6), atol=1e-6)
    assert torch.allclose(losses["vlb"], torch.zeros(6), atol=1e-4)
    wrong = torch.cat([noise + 0.5, torch.ones_like(noise)], dim=1)
    assert torch.all(diffusion.training_losses(wrong, x0, x_t, t, noise, 0.001)["vlb"] > 1e-3)


def test_respacing_keeps_the_alpha_bars_of_the_kept_steps():
    schedule = GaussianDiffusion().schedule
    short = schedule.respaced(10)
    assert len(short.betas) == 10 and short.timesteps[0] == 0 and short.timesteps[-1] == 999
    torch.testing.assert_close(short.alphas_cumprod, schedule.alphas_cumprod[short.timesteps])


def test_training_lowers_the_loss_and_exports_a_package(trained):
    log = [json.loads(line) for line in (trained.run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [4, 8, 12, 16, 20, 24]
    assert log[-1]["mse"] < 0.75 * log[0]["mse"]
    assert "val_loss" in log[1] and np.isfinite(log[-1]["val_loss"])
    assert (trained.run / "samples" / "step_000024.png").is_file()
    card = (trained.run / "model" / "MODEL_CARD.md").read_text()
    assert "folder" in card and "Licence" in card
    config = json.loads((trained.run / "model" / CONFIG).read_text())
    assert (
        config["format_version"] == 2 and config["kind"] == "sdm2d" and config["task"] == "label map -> image"
    )
    assert config["settings"]["schedule"] == "cosine" and [c["name"] for c in config["components"]] == [
        "model"
    ]
    assert config["provenance"]["trained_steps"] == 24
    assert config["provenance"]["training_data"]["dataset"] == "folder"
    # How the run went stays in the run folder; the package and config.json say what the model is.
    assert not RUN_SETTING_NAMES & set(config["settings"])
    assert not RUN_SETTING_NAMES & set(json.loads((trained.run / "config.json").read_text()))
    assert json.loads((trained.run / "run.json").read_text())["max_steps"] == 24


def test_package_loads_bit_exact(trained):
    synthesizer = Synthesizer.load(trained.run / "model", device="cpu")
    expected = trained.state.ema.module.state_dict()
    loaded = synthesizer.model.state_dict()
    assert expected.keys() == loaded.keys()
    assert all(torch.equal(expected[k].cpu(), loaded[k]) for k in expected)


def test_a_package_that_still_carries_run_settings_loads(trained, tmp_path):
    """Packages written before run settings had their own file listed them with the model's."""
    old = tmp_path / "old"
    shutil.copytree(trained.run / "model", old)
    edit_package_settings(old, lambda settings: settings.update(max_steps=24, workers=0, sample_steps=2))
    assert Synthesizer.load(old, device="cpu").config == Synthesizer.load(trained.run / "model", "cpu").config


def test_compile_setting_trains_through_torch_compile(tiny_cache, tmp_path, monkeypatch):
    """``compile=true`` trains through ``torch.compile`` (the eager backend here, to keep the test fast;
    the default inductor backend builds C++ for a minute) to the same weights, and checkpoints keep the
    plain names."""
    import functools

    from torch._dynamo.eval_frame import OptimizedModule

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    settings = _run(max_steps=2, checkpoint_every=1000, val_every=1000)
    plain = SDMTrainer(tiny_cache, tmp_path / "plain", _config(), "cpu", settings)
    compiled = SDMTrainer(
        tiny_cache, tmp_path / "compiled", _config(), "cpu", settings.with_overrides({"compile": True})
    )
    assert isinstance(compiled.train_model, OptimizedModule) and not isinstance(
        plain.train_model, OptimizedModule
    )
    plain.fit()
    compiled.fit()
    for name, value in plain.state.model.state_dict().items():
        torch.testing.assert_close(compiled.state.model.state_dict()[name], value, rtol=1e-4, atol=1e-6)
    names = json.loads((tmp_path / "compiled" / "model" / CONFIG).read_text())["components"]
    assert [c["name"] for c in names] == ["model"]
    assert Synthesizer.load(tmp_path / "compiled" / "model", device="cpu").model is not None


def test_gradient_accumulation_gives_the_same_gradients(tiny_cache, tmp_path):
    """Micro-batches change the memory a step needs, not its gradient (up to floating-point order)."""
    settings = _run(max_steps=1, checkpoint_every=1000, val_every=1000)
    whole = SDMTrainer(tiny_cache, tmp_path / "whole", _config(), "cpu", settings)
    micro = settings.with_overrides({"accumulation_steps": 3})
    split = SDMTrainer(tiny_cache, tmp_path / "split", _config(), "cpu", micro)
    batch = next(iter(whole._batches(1)))
    losses = []
    for trainer in (whole, split):
        trainer.state.optimizer.step = lambda: None  # keep the gradients to compare them
        losses.append(trainer.train_step(batch, 0))
    assert losses[0].keys() == losses[1].keys()
    assert all(abs(losses[0][k] - losses[1][k]) < 1e-6 for k in losses[0])
    pairs = zip(whole.state.model.named_parameters(), split.state.model.parameters(), strict=True)
    for (name, a), b in pairs:
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_resume_continues_exactly(tiny_cache, tmp_path):
    config, settings = _config(), _run(max_steps=3, checkpoint_every=2, val_every=1000)
    straight = SDMTrainer(tiny_cache, tmp_path / "straight", config, "cpu", settings)
    straight.fit()
    interrupted = SDMTrainer(tiny_cache, tmp_path / "resumed", config, "cpu", settings)
    interrupted.fit(stop_at=2)  # as if killed after the checkpoint at step 2
    resumed = SDMTrainer(tiny_cache, tmp_path / "resumed", config, "cpu", settings)
    assert resumed.state.step == 2
    resumed.fit()
    assert resumed.state.step == 3
    for name, value in straight.state.model.state_dict().items():
        torch.testing.assert_close(resumed.state.model.state_dict()[name], value, rtol=0, atol=0)
    assert resumed.state.optimizer.state_dict()["state"][0]["step"] == 3
    longer = SDMTrainer(
        tiny_cache, tmp_path / "resumed", config, "cpu", settings.with_overrides({"max_steps": 4})
    )
    assert (
        longer.state.step == 3
        and json.loads((tmp_path / "resumed" / "run.json").read_text())["max_steps"] == 4
    )
    # A run started when config.json also held the run settings resumes as well.
    old = tmp_path / "resumed" / "config.json"
    old.write_text(json.dumps(json.loads(old.read_text()) | settings.as_dict()))
    assert SDMTrainer(tiny_cache, tmp_path / "resumed", config, "cpu", settings).state.step == 3
    with pytest.raises(InputError, match="other settings"):
        SDMTrainer(
            tiny_cache, tmp_path / "resumed", config.with_overrides({"learning_rate": 1e-2}), "cpu", settings
        )


def test_a_run_can_start_from_a_package_with_other_settings(trained, tiny_cache, tmp_path):
    """``--set init=PACKAGE``: a new run (here with label dropout, for guidance) starts from the package's
    weights with a fresh optimizer, counts the package's steps in its own, and resumes from its own
    checkpoint after that; a package of another kind is refused before anything is written."""
    from safetensors.torch import load_file

    package = trained.run / "model"
    weights = load_file(str(package / "model.safetensors"))
    config = _config(label_dropout=0.2)
    settings = _run(max_steps=1, init=str(package), checkpoint_every=1)
    run = tmp_path / "guided"
    started = SDMTrainer(tiny_cache, run, config, "cpu", settings)
    for name, value in weights.items():
        torch.testing.assert_close(started.state.model.state_dict()[name], value, rtol=0, atol=0)
        torch.testing.assert_close(started.state.ema.module.state_dict()[name], value, rtol=0, atol=0)
    assert started.state.step == 0 and not started.state.optimizer.state_dict()["state"]
    started.fit()
    provenance = json.loads((run / "model" / CONFIG).read_text())["provenance"]
    assert provenance["trained_steps"] == 24 + 1
    assert provenance["initialised_from"] == {
        "package": str(package),
        "trained_steps": 24,
        "networks": ["model"],
    }
    assert "Trained steps: 25" in (run / "model" / "MODEL_CARD.md").read_text()
    # Trained with label dropout, the package samples with classifier-free guidance, which changes the image;
    # the package it started from (no dropout) refuses guidance: it never learnt to predict without a map.
    labels = phantom_label_map("4CH", "ED", seed=2, grid=PhantomGrid.for_view("4CH", size=SIZE)).labels
    guided = Synthesizer.load(run / "model", device="cpu")
    plain, sharper = (guided.synthesize(labels, steps=2, seed=3, guidance_scale=s)[0] for s in (1.0, 3.0))
    assert not np.array_equal(plain.array, sharper.array) and sharper.same_geometry(labels)
    with pytest.raises(InputError, match=r"guidance scale 3 needs .* label_dropout > 0"):
        Synthesizer.load(package, device="cpu").synthesize(labels, steps=2, guidance_scale=3.0)
    # Resuming takes the run's own checkpoint, not the package again, and still counts the package's steps.
    resumed = SDMTrainer(tiny_cache, run, config, "cpu", settings.with_overrides({"max_steps": 2}))
    assert resumed.state.step == 1 and resumed.trained_steps == 25
    for name, value in load_file(str(run / "checkpoint" / "model.safetensors")).items():
        torch.testing.assert_close(resumed.state.model.state_dict()[name], value, rtol=0, atol=0)
    # A package of another family is refused, and no run folder appears.
    foreign = tmp_path / "foreign"
    shutil.copytree(package, foreign)
    document = json.loads((foreign / CONFIG).read_text())
    (foreign / CONFIG).write_text(
        json.dumps(document | {"kind": "segmenter2d", "task": "image -> label map"})
    )
    with pytest.raises(InputError, match=r"init: .* is a 'segmenter2d' model; this run trains 'sdm2d'"):
        SDMTrainer(tiny_cache, tmp_path / "never", config, "cpu", _run(max_steps=1, init=str(foreign)))
    assert not (tmp_path / "never").exists()


@pytest.fixture(scope="module")
def synthesizer(trained):
    return Synthesizer.load(trained.run / "model", device="cpu")


@pytest.fixture(scope="module")
def odd_map():
    """A phantom on a non-square, anisotropic, offset grid: outputs must come back on exactly this grid."""
    grid = PhantomGrid.for_view("4CH", size=48)
    labels = phantom_label_map("4CH", "ES", seed=4, grid=grid).labels
    array = labels.array[:, :, 6:42]
    return Volume(array, (0.7, 0.45, 1.0), (3.0, -2.0, 5.0))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++", "dpm++sde"])
@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_samplers_are_seeded_and_keep_the_input_geometry(synthesizer, odd_map, sampler):
    first = synthesizer.synthesize(odd_map, n=2, steps=3, sampler=sampler, seed=5)
    again = synthesizer.synthesize(odd_map, n=2, steps=3, sampler=sampler, seed=5, batch_size=1)
    other = synthesizer.synthesize(odd_map, n=1, steps=3, sampler=sampler, seed=6)
    assert len(first) == 2
    for image in first:
        assert image.same_geometry(odd_map) and image.array.dtype == np.uint8
        assert not image.array[odd_map.array == Structure.BACKGROUND.label].any()  # black outside the sector
    assert_within_one_grey_level(first[0].array, again[0].array)  # independent of batching
    assert_within_one_grey_level(first[1].array, again[1].array)
    assert_within_one_grey_level(first[1].array, other[0].array)  # image k uses seed + k
    assert not np.array_equal(first[0].array, first[1].array)


def test_a_slice_of_a_3d_map_and_a_plain_array_work(synthesizer):
    volume = phantom_label_map("3D", "ED", seed=1, grid=PhantomGrid.for_view("3D", size=24)).labels
    (image,) = synthesizer.synthesize(volume, steps=2, slice_index=12)
    assert image.is_2d and image.array.shape[1:] == volume.array.shape[1:]
    np.testing.assert_allclose(image.origin, (volume.ijk_to_lps() @ [0, 0, 12, 1])[:3])
    (plain,) = synthesizer.synthesize(volume.array[12], steps=2)
    assert plain.array.shape == (1, *volume.array.shape[1:])
    with pytest.raises(InputError, match="outside the volume"):
        synthesizer.synthesize(volume, steps=2, slice_index=99)


def test_guidance_scale_one_is_plain_conditioning(synthesizer):
    seg = torch.zeros((1, len(synthesizer.config.classes), SIZE, SIZE))
    seg[:, 0] = 1.0
    x = torch.randn((1, 1, SIZE, SIZE))
    with torch.no_grad():
        plain = synthesizer.model(x, torch.tensor([500]), seg)
        assert torch.equal(_denoiser(synthesizer.model, seg, 1.0)(x, torch.tensor(500)), plain)
        guided = _denoiser(synthesizer.model, seg, 1.0 + 1e-6)(x, torch.tensor(500))
    torch.testing.assert_close(guided, plain, atol=1e-4, rtol=1e-4)
    assert SDMConfig().label_dropout == 0.0  # guidance is off by default, as in the paper
    diffusion = GaussianDiffusion()
    a = denoise(synthesizer.model, seg, diffusion, steps=2, seed=1)
    b = denoise(synthesizer.model, seg, diffusion, steps=2, seed=1, guidance_scale=1.0)
    assert torch.equal(a, b)


def test_bad_label_maps_are_refused(synthesizer, odd_map):
    unknown = odd_map.with_array(np.where(odd_map.array == 1, 9, odd_map.array))
    with pytest.raises(UnknownLabelError, match="9"):
        synthesizer.synthesize(unknown, steps=2)
    with pytest.raises(InputError, match="no heart structure"):
        synthesizer.synthesize(odd_map.with_array(np.zeros_like(odd_map.array)), steps=2)
    with pytest.raises(InputError, match="sampler"):
        synthesizer.synthesize(odd_map, steps=2, sampler="euler")
    with pytest.raises(InputError, match="rflow"):  # a flow sampler, for flow models only
        synthesizer.synthesize(odd_map, steps=2, sampler="rflow")
    with pytest.raises(InputError, match="steps"):
        synthesizer.synthesize(odd_map, steps=0)


def test_foreign_or_damaged_model_folders_are_refused(trained, tmp_path):
    with pytest.raises(InputError, match="no such model folder"):
        Synthesizer.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not an EchoSynth model package"):
        Synthesizer.load(tmp_path / "empty")
    package = trained.run / "model"
    for name, damage, message in (
        ("kind", lambda c: c | {"kind": "segmenter2d", "task": "image -> label map"}, "expected 'sdm2d'"),
        ("version", lambda c: c | {"format_version": 99}, "format version"),
        ("shape", lambda c: c | {"settings": c["settings"] | {"channels": [64, 64, 64]}}, "were saved with"),
    ):
        copy = tmp_path / name
        copy.mkdir()
        for file in package.iterdir():
            (copy / file.name).write_bytes(file.read_bytes())
        config = json.loads((copy / CONFIG).read_text())
        (copy / CONFIG).write_text(json.dumps(damage(config)))
        with pytest.raises(InputError, match=message):
            Synthesizer.load(copy)
    resealed = edit_package_settings(tmp_path / "shape", lambda settings: settings.update(channels=[64] * 3))
    with pytest.raises(InputError, match="do not fit"):  # settings sealed as saved, weights of another net
        Synthesizer.load(resealed)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for file in package.iterdir():
        (corrupt / file.name).write_bytes(file.read_bytes())
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="safetensors"):
        Synthesizer.load(corrupt)


def test_synthesize_cli_writes_images_and_augmented_anatomies(
    trained, odd_map, tmp_path, capsys, monkeypatch
):
    labels = tmp_path / "map.nii.gz"
    write_label_map(odd_map, labels)
    out = tmp_path / "out"
    args = ["synthesize", "--model", str(trained.run / "model"), "--labels", str(labels), "--out", str(out)]
    made = []  # the model's conditioning of each map is made once per job (not at prepare and again)
    conditioning = Synthesizer.conditioning
    def counted(self, target, *rest):
        made.append(target.array.shape)
        return conditioning(self, target, *rest)

    monkeypatch.setattr(Synthesizer, "conditioning", counted)
    assert main([*args, "--n", "2", "--steps", "2", "--augment", "1"]) == 0
    assert len(made) == 2  # the map and its one new anatomy
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "map_aug00.nii.gz",
        "map_aug00_synth00.nii.gz",
        "map_aug00_synth01.nii.gz",
        "map_synth00.nii.gz",
        "map_synth01.nii.gz",
    ]
    bad = tmp_path / "bad.nii.gz"
    write_label_map(odd_map.with_array(np.zeros_like(odd_map.array)), bad)
    capsys.readouterr()
    assert main([*args[:4], str(labels), str(bad), "--out", str(tmp_path / "none"), "--steps", "2"]) == 2
    assert "no heart structure" in capsys.readouterr().err
    assert not any((tmp_path / "none").glob("*.nii.gz"))
    assert main(["synthesize", "--model", str(tmp_path), "--labels", str(labels), "--out", str(out)]) == 2


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_train_cli_resumes_with_the_same_command(tiny_cache, tmp_path, capsys):
    values = TINY | RUN
    settings = [f"--set={k}={json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in values.items()]
    command = ["train", "sdm", "--data", str(tiny_cache), "--out", str(tmp_path / "run"), *settings]
    assert main([*command, "--set=max_steps=2", "--set=sample_every=2"]) == 0
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["step"] == 2
    assert main([*command, "--set=max_steps=3", "--set=sample_every=2"]) == 0
    assert "step 2 of 3" in capsys.readouterr().out
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert main([*command, "--set=max_steps=3", "--set=learning_rate=0.5"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(["train", "sdm", "--data", str(tmp_path), "--out", str(tmp_path / "x")]) == 2


class _Oracle(torch.nn.Module):
    """The exact noise predictor when the data is always ``target``."""

    def __init__(self, target: torch.Tensor, diffusion: GaussianDiffusion) -> None:
        super().__init__()
        self.target = target
        self.abar = diffusion.schedule.alphas_cumprod.float()

    def forward(self, x: torch.Tensor, t: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        abar = self.abar[t.long()].view(-1, 1, 1, 1)
        eps = (x - abar.sqrt() * self.target) / (1 - abar).sqrt()
        return torch.cat([eps, torch.zeros_like(eps)], dim=1)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++", "dpm++sde"])
@pytest.mark.parametrize("steps", [5, 25])
def test_samplers_recover_the_data_with_an_exact_denoiser(sampler, steps):
    diffusion = GaussianDiffusion()
    target = torch.linspace(-0.9, 0.9, 64).view(1, 1, 8, 8)
    images = denoise(
        _Oracle(target, diffusion), torch.zeros((2, 5, 8, 8)), diffusion, sampler=sampler, steps=steps
    )
    torch.testing.assert_close(images, target.expand(2, -1, -1, -1), atol=2e-3, rtol=0)


class _Recording(_Oracle):
    """The exact denoiser, remembering the timestep and input of every call."""

    def __init__(self, target: torch.Tensor, diffusion: GaussianDiffusion) -> None:
        super().__init__(target, diffusion)
        self.calls: list[tuple[int, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        self.calls.append((int(t[0]), x.clone()))
        return super().forward(x, t, seg)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++", "dpm++sde"])
def test_a_start_image_is_noised_to_its_strength_and_only_the_rest_runs(sampler):
    diffusion = GaussianDiffusion()
    target = torch.linspace(-0.9, 0.9, 64).view(1, 1, 8, 8)
    start = -target.flip(-1)
    oracle = _Recording(target, diffusion)
    images = denoise(
        oracle,
        torch.zeros((2, 5, 8, 8)),
        diffusion,
        sampler=sampler,
        steps=20,
        seed=3,
        init=start,
        strength=0.3,
    )
    assert len(oracle.calls) == 6  # 30 % of 20 steps
    first, x = oracle.calls[0]
    assert abs(first - 300) <= 50  # the chain entered 30 % of the way from the data, within one step
    abar = diffusion.schedule.alphas_cumprod[first]
    noise = (x.double() - abar.sqrt() * start.double()) / (1 - abar).sqrt()
    seeded = [torch.randn((1, 1, 8, 8), generator=torch.Generator().manual_seed(s)) for s in (3, 4)]
    torch.testing.assert_close(noise.float(), torch.cat(seeded), atol=1e-4, rtol=0)
    torch.testing.assert_close(images, target.expand(2, -1, -1, -1), atol=2e-3, rtol=0)
    for strength in (0.0, 1.5, float("nan")):
        with pytest.raises(InputError, match="strength"):
            denoise(oracle, torch.zeros((1, 5, 8, 8)), diffusion, init=start, strength=strength)


@pytest.fixture(scope="module")
def from_simulator(trained, tmp_path_factory):
    """The tiny package with its own start strength 0.2 (as sdm-camus64 carries 0.5)."""
    folder = tmp_path_factory.mktemp("packages") / "from-simulator"
    return package_with_settings(trained.run / "model", folder, start_strength=0.2)


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_sampling_can_start_from_the_simulators_image(synthesizer, from_simulator, odd_map, tmp_path, capsys):
    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator
    from EchoSynthLib.inference.grids import image_back_onto, with_sector
    from EchoSynthLib.preprocessing.prepare import image_on_grid
    from EchoSynthLib.simulation import simulate_bmode

    start = synthesizer.synthesize(odd_map, n=2, steps=10, seed=5, strength=0.2)
    again = synthesizer.synthesize(odd_map, n=2, steps=10, seed=5, strength=0.2, batch_size=1)
    noise = synthesizer.synthesize(odd_map, n=2, steps=10, seed=5)
    for k in range(2):
        assert start[k].same_geometry(odd_map)
        assert_within_one_grey_level(start[k].array, again[k].array)  # seeded, independent of batching
        # the simulator's image of the map, through the model's grid and back
        target = with_sector(odd_map)
        grid = synthesizer.conditioning(target).grid
        simulated = image_back_onto(target, image_on_grid(simulate_bmode(target, 5 + k), grid), grid)
        near, far = (np.abs(x[k].array - simulated.array.astype(float)).mean() for x in (start, noise))
        assert near < 0.6 * far  # measured: about half
    # A package's own start strength is the default; --strength 1 still starts from noise.
    package = from_simulator
    default = Synthesizer.load(package, device="cpu")
    np.testing.assert_array_equal(default.synthesize(odd_map, steps=10, seed=5)[0].array, start[0].array)
    np.testing.assert_array_equal(
        default.synthesize(odd_map, steps=10, seed=5, strength=1.0)[0].array, noise[0].array
    )
    generator = open_generator(GeneratorSettings(str(package), steps=10))
    assert (
        "from the simulator's image (a translation: its source image) at strength 0.2"
        in generator.description
    )
    np.testing.assert_array_equal(generator.generate(odd_map, 1, 5)[0].array, start[0].array)
    labels = tmp_path / "map.nii.gz"
    write_label_map(odd_map, labels)
    command = ["synthesize", "--model", str(package), "--labels", str(labels), "--steps", "10", "--seed", "5"]
    assert main([*command, "--out", str(tmp_path / "out"), "--strength", "1"]) == 0
    from EchoSynthLib.data.io import read_image

    written = read_image(tmp_path / "out" / "map_synth00.nii.gz")
    np.testing.assert_array_equal(written.array.reshape(noise[0].array.shape), noise[0].array)
    for bad in ("0", "1.5", "nan"):
        assert main([*command, "--out", str(tmp_path / "bad"), "--strength", bad]) == 2
        assert "strength" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    with pytest.raises(InputError, match="strength"):
        synthesizer.synthesize(odd_map, steps=10, strength=0.0)


def test_translation_starts_from_the_source_image(synthesizer, from_simulator, odd_map, tmp_path):
    from EchoSynthLib.cli.main import main
    from EchoSynthLib.data.io import read_image, write_image
    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator
    from EchoSynthLib.inference.grids import with_sector

    target = with_sector(odd_map)
    # a "scanner" image of the map: another simulator draw, made darker, so it is no simulator default
    source = target.with_array(synthesizer.synthesize(odd_map, steps=10, seed=40, strength=0.2)[0].array // 2)
    generator = open_generator(GeneratorSettings(str(from_simulator), steps=10))
    translated = generator.translate(source, generator.prepare(odd_map), 7)
    generated = generator.generate(generator.prepare(odd_map), 1, 7)[0]
    assert translated.same_geometry(odd_map)
    inside = target.array != Structure.BACKGROUND.label
    near, far = (np.abs(x.array.astype(float) - source.array)[inside].mean() for x in (translated, generated))
    assert near < 0.6 * far  # it kept the source's look and layout, not the simulator's
    plain = open_generator(GeneratorSettings(str(from_simulator), steps=10, strength=1.0))
    np.testing.assert_array_equal(  # from pure noise the source is not used: that is generate
        plain.translate(source, plain.prepare(odd_map), 7).array,
        plain.generate(plain.prepare(odd_map), 1, 7)[0].array,
    )
    moved = Volume(source.array, (0.5, 0.45, 1.0), source.origin)  # same shape, other spacing
    with pytest.raises(InputError, match="grid differs"):
        synthesizer.synthesize(odd_map, steps=10, strength=0.2, source=moved)
    # through the command line: the same image as the library's for seed 7
    write_image(source, tmp_path / "scan.nii.gz")
    write_label_map(odd_map, tmp_path / "scan_labels.nii.gz")
    args = ["translate", "--model", str(from_simulator), "--images", str(tmp_path / "scan.nii.gz")]
    args += [
        "--labels",
        str(tmp_path / "scan_labels.nii.gz"),
        "--out",
        str(tmp_path / "out"),
        "--steps",
        "10",
    ]
    assert main([*args, "--seed", "7"]) == 0
    written = read_image(tmp_path / "out" / "scan_translated.nii.gz")
    np.testing.assert_array_equal(written.array.reshape(translated.array.shape), translated.array)
