"""The latent diffusion families (issue 14): label-conditioned synthesis and DIFF-3 paired generation on
a tiny autoencoder, 2D and 3D; exact resume; packages; geometry; samplers; seeds; bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_DENOISER, assert_within_one_grey_level, package_with_settings

from EchoSynthLib.cli.main import main
from EchoSynthLib.data.io import read_image, read_label_map, read_segmentation
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.diffusion.processes import NoiseProcess
from EchoSynthLib.diffusion.schedules import BetaSchedule
from EchoSynthLib.engine.settings import RunSettings
from EchoSynthLib.errors import InputError, UnknownLabelError
from EchoSynthLib.inference.generators import GeneratorSettings, open_generator
from EchoSynthLib.models.autoencoder.config import AutoencoderConfig
from EchoSynthLib.models.autoencoder.trainer import AutoencoderTrainer
from EchoSynthLib.models.latent.cleanup import clean_labels
from EchoSynthLib.models.latent.config import LatentConfig
from EchoSynthLib.models.latent.network import Denoiser
from EchoSynthLib.models.latent.pipeline import LatentModel
from EchoSynthLib.models.latent.trainer import LATENTS, LatentTrainer
from EchoSynthLib.store.package import read_package_header

DENOISER = LatentConfig.from_dict(TINY_DENOISER)
RUN = RunSettings(
    max_steps=4, workers=0, log_every=1, val_every=4, checkpoint_every=2, sample_every=4, sample_steps=3
)


@pytest.fixture(scope="module")
def coders(tiny_autoencoders):
    return {"image": tiny_autoencoders["image"] / "model", "pairs": tiny_autoencoders["pairs"]}


def _train(cache, run, coder, **overrides):
    config = DENOISER.with_overrides({"autoencoder": str(coder), **overrides})
    trainer = LatentTrainer(cache, run, config, "cpu", RUN)
    trainer.fit()
    return trainer


@pytest.fixture(scope="module")
def conditioned(tiny_cache, coders, tmp_path_factory):
    return _train(tiny_cache, tmp_path_factory.mktemp("latent") / "run", coders["image"])


@pytest.fixture(scope="module")
def paired(tiny_paired_model):
    return tiny_paired_model


def test_a_tiny_autoencoder_reconstructs_phantom_images_and_labels(coders):
    """60 steps on twelve 32x32 phantoms: the stated floor is SSIM 0.5 and Dice 0.6 per heart structure
    on the validation cases (the untrained network gives about 0 and 0.2)."""
    log = [json.loads(line) for line in (coders["pairs"] / "log.jsonl").read_text().splitlines()]
    assert log[-1]["l1"] < 0.6 * log[0]["l1"]
    final = log[-1]
    assert final["val_ssim"] > 0.5, final
    for structure in ("lv_cavity", "lv_myocardium", "left_atrium"):
        assert final[f"val_dice_{structure}"] > 0.6, final


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_training_resumes_exactly_and_the_package_round_trips(tiny_cache, coders, conditioned, tmp_path):
    resumed_run = tmp_path / "resumed"
    config = DENOISER.with_overrides({"autoencoder": str(coders["image"])})
    LatentTrainer(tiny_cache, resumed_run, config, "cpu", RUN).fit(stop_at=2)
    assert (resumed_run / LATENTS).is_file()
    resumed = LatentTrainer(tiny_cache, resumed_run, config, "cpu", RUN)
    assert resumed.state.step == 2
    resumed.fit()
    for name, expected, got in (
        ("model", conditioned.state.model, resumed.state.model),
        ("ema", conditioned.state.ema, resumed.state.ema),
    ):
        reference = expected.state_dict()
        for key, value in got.state_dict().items():
            torch.testing.assert_close(value, reference[key], rtol=0, atol=0, msg=f"{name}.{key}")
    reference = conditioned.state.optimizer.state_dict()["state"]
    for index, entry in resumed.state.optimizer.state_dict()["state"].items():
        torch.testing.assert_close(entry["exp_avg"], reference[index]["exp_avg"], rtol=0, atol=0)
    # The package: the EMA denoiser and the autoencoder, bit for bit.
    model = LatentModel.load(conditioned.run / "model", "cpu")
    for key, value in conditioned.state.ema.module.state_dict().items():
        assert torch.equal(model.denoiser.state_dict()[key], value), key
    for key, value in conditioned.autoencoder.model.state_dict().items():
        assert torch.equal(model.autoencoder.state_dict()[key], value), key
    header = read_package_header(conditioned.run / "model")
    assert header["kind"] == "latent-synthesis" and {c["name"] for c in header["components"]} == {
        "model",
        "autoencoder",
    }
    assert model.config.scale_factor == conditioned.config.scale_factor > 0
    assert (conditioned.run / "samples" / "step_000004.png").is_file()


def test_a_conditioned_sample_has_the_maps_exact_geometry_in_2d(conditioned, phantom_2d):
    labels = phantom_2d.labels
    moved = Volume(labels.array, (0.7, 0.45, 1.0), (12.0, -3.0, 4.0), (0, 1, 0, -1, 0, 0, 0, 0, 1))
    model = LatentModel.load(conditioned.run / "model", "cpu")
    images = model.synthesize(moved, n=2, steps=3, sampler="ddim")
    assert len(images) == 2
    for image in images:
        assert image.same_geometry(moved) and image.array.dtype == np.uint8
        assert not image.array[moved.array == Structure.BACKGROUND.label].any()  # black outside the sector
    # Through the Generator interface (what synthesize, the worker and the panel use).
    generator = open_generator(GeneratorSettings(str(conditioned.run / "model"), steps=3, device="cpu"))
    prepared = generator.prepare(moved)
    assert generator.generate(prepared, 1, seed=0)[0].same_geometry(moved)


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_a_controlnet_conditioned_model_learns_to_use_its_map(tiny_cache, coders, tmp_path, phantom_2d):
    """``conditioning=controlnet``: MONAI's ControlNet beside a plain U-Net. Its outputs start at zero (the
    map changes nothing); after a few steps the prediction depends on the map, the package round-trips and
    a sample keeps the map's geometry."""
    # No EMA here: the package holds the EMA weights, which after 4 steps are still nearly the initial ones.
    overrides = {"conditioning": "controlnet", "ema_decay": 0.0, "learning_rate": 1e-2}
    trainer = _train(tiny_cache, tmp_path / "control", coders["image"], **overrides)
    model = LatentModel.load(trainer.run / "model", "cpu")
    untrained = Denoiser(model.config).eval()
    assert model.config.conditioning == "controlnet" and hasattr(model.denoiser, "control")
    seg = torch.zeros((1, len(model.config.classes), 32, 32))
    seg[:, 1, 8:24, 8:24] = 1.0
    x, t = torch.randn((1, *model.config.latent_shape)), torch.tensor([25])
    with torch.no_grad():
        assert torch.equal(untrained(x, t, seg), untrained(x, t, torch.zeros_like(seg)))
        change = model.denoiser(x, t, seg) - model.denoiser(x, t, torch.zeros_like(seg))
    # Exactly zero while the zero-initialised control outputs are zero; how far 4 steps move it depends on
    # the CPU's float kernels (9.7e-5 with AVX2 kernels, above 1e-4 with AVX-512), so any clear change counts.
    assert change.abs().max() > 1e-6
    image = model.synthesize(phantom_2d.labels, n=1, steps=2, sampler="ddim")[0]
    assert image.same_geometry(phantom_2d.labels)
    with pytest.raises(InputError, match="conditioning must be one of spade, controlnet"):
        DENOISER.with_overrides({"conditioning": "crossattention"})
    with pytest.raises(InputError, match="power-of-two downsampling"):
        DENOISER.with_overrides({"conditioning": "controlnet", "downsampling": 3})


def test_seeds_reproduce_and_image_k_uses_seed_plus_k(conditioned, phantom_2d):
    model = LatentModel.load(conditioned.run / "model", "cpu")
    three = model.synthesize(phantom_2d.labels, n=3, steps=3, seed=5, sampler="dpm++sde")
    again = model.synthesize(phantom_2d.labels, n=1, steps=3, seed=6, sampler="dpm++sde")
    assert np.array_equal(three[1].array, again[0].array)
    assert not np.array_equal(three[0].array, three[1].array)


def test_a_3d_map_gives_a_2d_model_one_plane(conditioned, phantom_3d):
    model = LatentModel.load(conditioned.run / "model", "cpu")
    image = model.synthesize(phantom_3d.labels, n=1, steps=2, sampler="ddim")[0]
    assert image.array.shape[0] == 1 and image.array.shape[1:] == phantom_3d.labels.array.shape[1:]


def test_bad_inputs_are_refused_with_clear_errors(
    conditioned, paired, phantom_2d, coders, tiny_cache, tmp_path
):
    model = LatentModel.load(conditioned.run / "model", "cpu")
    labels = phantom_2d.labels
    with pytest.raises(UnknownLabelError, match="9"):
        model.synthesize(labels.with_array(np.where(labels.array == 1, 9, labels.array)), steps=2)
    with pytest.raises(InputError, match="no heart structure"):
        model.synthesize(labels.with_array(np.zeros_like(labels.array)), steps=2)
    with pytest.raises(InputError, match="cannot sample with 'rflow'"):
        model.synthesize(labels, steps=2, sampler="rflow")
    with pytest.raises(InputError, match=r"steps must be in 1\.\.50"):
        model.synthesize(labels, steps=51)
    with pytest.raises(InputError, match="classifier-free guidance"):
        model.synthesize(labels, steps=2, guidance_scale=2.0)
    with pytest.raises(InputError, match="needs a label map"):
        model.generate_pairs(1, steps=2)
    pairs = LatentModel.load(paired, "cpu")
    with pytest.raises(InputError, match="takes no label map"):
        pairs.synthesize(labels, steps=2)
    with pytest.raises(InputError, match="latent-pairs' model"):
        open_generator(GeneratorSettings(str(paired)))
    with pytest.raises(InputError, match="is a 'autoencoder' model"):
        LatentModel.load(coders["image"], "cpu")
    # Training: no autoencoder, or one of the wrong kind, is refused before a run folder appears.
    with pytest.raises(InputError, match="--set autoencoder="):
        LatentTrainer(tiny_cache, tmp_path / "a", DENOISER, "cpu", RUN)
    wrong = DENOISER.with_overrides({"autoencoder": str(coders["pairs"] / "model")})
    with pytest.raises(InputError, match="needs an image-only autoencoder"):
        LatentTrainer(tiny_cache, tmp_path / "b", wrong, "cpu", RUN)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_generate_writes_paired_cases_with_geometry_and_named_segments(paired, conditioned, tmp_path, capsys):
    out = tmp_path / "cases"
    folder = str(paired)
    assert (
        main(
            ["generate", "--model", folder, "--n", "3", "--out", str(out), "--steps", "3", "--device", "cpu"]
        )
        == 0
    )
    images = sorted(out.glob("*_image.nrrd"))
    assert [p.name for p in images] == [f"case_{k:04d}_image.nrrd" for k in range(3)]
    config = LatentModel.load(paired, "cpu").config
    for image_path in images:
        image = read_image(image_path)
        labels = read_label_map(
            image_path.with_name(image_path.name.replace("_image.nrrd", "_labels.seg.nrrd"))
        )
        assert image.same_geometry(labels) and image.array.shape == (1, *config.image_shape)
        np.testing.assert_allclose(image.spacing, config.spacing)
        assert set(np.unique(labels.array)) <= {s.label for s in Structure}
        _, segments = read_segmentation(
            image_path.with_name(image_path.name.replace("_image.nrrd", "_labels.seg.nrrd"))
        )
        assert all(s.name for s in segments)
    # The same seed makes the same case; an existing file is never overwritten.
    again = tmp_path / "again"
    main(
        [
            "generate",
            "--model",
            folder,
            "--n",
            "1",
            "--seed",
            "2",
            "--out",
            str(again),
            "--steps",
            "3",
            "--device",
            "cpu",
        ]
    )
    assert np.array_equal(read_image(again / "case_0000_image.nrrd").array, read_image(images[2]).array)
    before = images[0].read_bytes()
    assert main(["generate", "--model", folder, "--n", "1", "--out", str(out), "--steps", "3"]) != 0
    assert "exists" in capsys.readouterr().err and images[0].read_bytes() == before
    # A label-conditioned model is not a paired one.
    assert (
        main(
            ["generate", "--model", str(conditioned.run / "model"), "--n", "1", "--out", str(tmp_path / "x")]
        )
        != 0
    )
    assert not (tmp_path / "x").exists()


def test_the_3d_families_train_and_keep_geometry(tiny_cache_3d, tmp_path, phantom_3d):
    cache = tiny_cache_3d
    coder_3d = AutoencoderConfig(
        spatial_dims=3,
        channels=(8, 16),
        norm_groups=8,
        latent_channels=2,
        discriminator_channels=8,
        batch_size=2,
    )
    run_3d = RunSettings(max_steps=2, workers=0, checkpoint_every=2, sample_every=2)
    for with_labels in (False, True):
        config = coder_3d.with_overrides({"with_labels": with_labels})
        AutoencoderTrainer(cache, tmp_path / f"coder{with_labels}", config, "cpu", run_3d).fit()
    small = {"batch_size": 2}
    conditioned = _train(cache, tmp_path / "c", tmp_path / "coderFalse" / "model", **small)
    model = LatentModel.load(conditioned.run / "model", "cpu")
    labels = phantom_3d.labels
    moved = Volume(labels.array, (0.9, 0.8, 1.1), (5.0, 6.0, 7.0), labels.direction)
    volume = model.synthesize(moved, n=1, steps=2, sampler="ddim")[0]
    assert volume.same_geometry(moved) and volume.array.shape == labels.array.shape
    started = model.synthesize(moved, n=1, steps=2, sampler="ddim", strength=0.5)[0]  # from the simulator
    assert started.same_geometry(moved) and not np.array_equal(started.array, volume.array)
    with pytest.raises(InputError, match="3D model needs a 3D label map"):
        model.synthesize(Volume(labels.array[:1]), steps=2)
    pairs = _train(cache, tmp_path / "p", tmp_path / "coderTrue" / "model", conditioned=False, **small)
    image, label_map = LatentModel.load(pairs.run / "model", "cpu").generate_pairs(1, steps=2)[0]
    assert image.array.shape == label_map.array.shape == (16, 16, 16) and image.same_geometry(label_map)


@pytest.mark.parametrize("sampler", ["ddim", "dpm++", "dpm++sde", "rflow"])
def test_every_sampler_recovers_the_data_with_an_exact_denoiser(sampler):
    """With one data point x*, the exact noise (or velocity) prediction is known in closed form; every
    sampler must land on x*."""
    kind = "rflow" if sampler == "rflow" else "ddpm"
    process = NoiseProcess(kind, BetaSchedule(1000, "scaled_linear_beta", 0.0015, 0.0195))
    target = torch.linspace(-1.5, 1.5, 2 * 8 * 8).reshape(1, 2, 8, 8)
    alphas = process.scheduler.alphas_cumprod if kind == "ddpm" else None

    def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if kind == "ddpm":
            abar = alphas[int(t)]
            return (x - abar.sqrt() * target) / (1 - abar).sqrt()
        s = float(t) / 1000
        noise = (x - (1 - s) * target) / s
        return target - noise

    generators = [torch.Generator().manual_seed(0)]
    start = torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    out = process.denoise(predict, start, sampler, 20, generators)
    torch.testing.assert_close(out, target, atol=2e-3, rtol=0)


def test_cleanup_keeps_one_component_per_structure_and_fills_the_ventricle():
    labels = np.full((20, 20), Structure.SECTOR.label, np.uint8)
    labels[4:14, 4:14] = Structure.LV_MYOCARDIUM.label
    labels[6:12, 6:12] = Structure.LV_CAVITY.label
    labels[8, 8] = Structure.LV_MYOCARDIUM.label  # a myocardium island in the blood pool ...
    labels[8, 9] = Structure.SECTOR.label  # ... and a hole of sector
    labels[17, 17] = Structure.LV_CAVITY.label  # a stray cavity island
    cleaned = clean_labels(labels)
    assert cleaned[17, 17] == Structure.SECTOR.label
    assert cleaned[8, 9] == Structure.LV_CAVITY.label
    assert cleaned[8, 8] == Structure.LV_CAVITY.label  # the island is removed, then filled as cavity
    assert (cleaned == Structure.LV_CAVITY.label).sum() == 36
    assert (cleaned == Structure.LV_MYOCARDIUM.label).sum() == 100 - 36
    assert labels[17, 17] == Structure.LV_CAVITY.label  # the input is not modified


def test_a_rectified_flow_model_trains_and_samples_with_its_own_sampler(
    tiny_cache, coders, tmp_path, phantom_2d
):
    trainer = _train(tiny_cache, tmp_path / "flow", coders["image"], process="rflow")
    folder = str(trainer.run / "model")
    generator = open_generator(GeneratorSettings(folder, steps=3, device="cpu"))  # default sampler given
    assert generator.sampling.sampler == "rflow" and "rflow" in generator.description
    image = generator.generate(generator.prepare(phantom_2d.labels), 1, seed=0)[0]
    assert image.same_geometry(phantom_2d.labels) and image.array.any()
    with pytest.raises(InputError, match="cannot sample with 'ddim'"):
        open_generator(GeneratorSettings(folder, steps=3, sampler="ddim"))


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_a_run_started_before_an_autoencoder_setting_was_added_resumes(tiny_cache, conditioned, tmp_path):
    """The run's config.json holds the autoencoder's settings as they were; a setting added to the
    autoencoder later (with its default) must not make the run refuse to resume."""
    import shutil

    run = tmp_path / "old"
    shutil.copytree(conditioned.run, run)
    document = json.loads((run / "config.json").read_text())
    for key in ("encoder_weight", "encoder"):
        del document["autoencoder_settings"][key]
    (run / "config.json").write_text(json.dumps(document))
    config = DENOISER.with_overrides({"autoencoder": conditioned.config.autoencoder})
    assert LatentTrainer(tiny_cache, run, config, "cpu", RUN).state.step == 4


@pytest.mark.parametrize("sampler", ["ddim", "dpm++", "dpm++sde", "rflow"])
def test_every_sampler_can_start_from_an_image_at_its_strength(sampler):
    """SDEdit in latent space: the chain enters ``strength`` of the way from the data, from the start image
    mixed with the seeded noise, runs only that share of the steps and (exact denoiser) lands on the data."""
    kind = "rflow" if sampler == "rflow" else "ddpm"
    process = NoiseProcess(kind, BetaSchedule(1000, "scaled_linear_beta", 0.0015, 0.0195))
    target = torch.linspace(-1.5, 1.5, 2 * 8 * 8).reshape(1, 2, 8, 8)
    start = -target.flip(-1)
    calls = []

    def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append((int(t), x.clone()))
        if kind == "ddpm":
            abar = process.scheduler.alphas_cumprod[int(t)]
            return (x - abar.sqrt() * target) / (1 - abar).sqrt()
        s = float(t) / 1000
        return target - (x - (1 - s) * target) / s

    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    generators = [torch.Generator().manual_seed(0)]
    out = process.denoise(predict, noise, sampler, 20, generators, init=start, strength=0.3)
    assert len(calls) == 6  # 30 % of 20 steps
    first, x = calls[0]
    assert abs(first - 300) <= 50  # within one step of 30 % of the way
    if kind == "ddpm":
        abar = process.scheduler.alphas_cumprod[first]
        expected = abar.sqrt() * start + (1 - abar).sqrt() * noise
    else:
        expected = (1 - first / 1000) * start + first / 1000 * noise
    torch.testing.assert_close(x, expected.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(out, target, atol=2e-3, rtol=0)
    with pytest.raises(InputError, match="strength"):
        process.denoise(predict, noise, sampler, 20, generators, init=start, strength=0.0)


@pytest.fixture(scope="module")
def from_simulator(conditioned, tmp_path_factory):
    """The tiny conditioned package with its own start strength 0.3 (as a shipped model may carry)."""
    folder = tmp_path_factory.mktemp("packages") / "latent-from-simulator"
    return package_with_settings(conditioned.run / "model", folder, start_strength=0.3)


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_a_conditioned_model_can_start_from_the_simulators_image(
    conditioned, from_simulator, phantom_2d, tmp_path, capsys, monkeypatch
):
    import EchoSynthLib.models.latent.pipeline as pipeline
    from EchoSynthLib.data.io import write_label_map
    from EchoSynthLib.inference.grids import model_conditioning, start_images

    model = LatentModel.load(conditioned.run / "model", "cpu")
    labels = phantom_2d.labels
    target = model.prepare(labels)
    # What sampling starts from: the autoencoder's latents of the simulator's images of the map.
    seen, draw = [], pipeline.denoise

    def recording_draw(*args, **kwargs):
        seen.append((kwargs["init"], kwargs["strength"]))
        return draw(*args, **kwargs)

    monkeypatch.setattr(pipeline, "denoise", recording_draw)
    start = model.synthesize(labels, n=2, steps=10, seed=5, strength=0.3, sampler="ddim")
    _, grid = model_conditioning(target, model.config.classes, model.config.image_shape)
    simulated = start_images(target, grid, model.config.image_shape, 5, 2)
    init, strength = seen[0]
    assert strength == 0.3 and init is not None
    torch.testing.assert_close(init, model.encoded(simulated))
    noise = model.synthesize(labels, n=2, steps=10, seed=5, sampler="ddim")
    again = model.synthesize(labels, n=2, steps=10, seed=5, strength=0.3, sampler="ddim", batch_size=1)
    for k in range(2):
        assert start[k].same_geometry(labels)
        assert_within_one_grey_level(start[k].array, again[k].array)  # seeded, independent of batching
        assert not np.array_equal(start[k].array, noise[k].array)
    # A package's own start strength is the default; strength 1 still starts from noise.
    default = LatentModel.load(from_simulator, "cpu")
    np.testing.assert_array_equal(
        default.synthesize(labels, steps=10, seed=5, sampler="ddim")[0].array, start[0].array
    )
    np.testing.assert_array_equal(
        default.synthesize(labels, steps=10, seed=5, sampler="ddim", strength=1.0)[0].array, noise[0].array
    )
    warnings = []
    generator = open_generator(
        GeneratorSettings(str(from_simulator), steps=10, sampler="ddim"), warnings.append
    )
    assert (
        not warnings
        and "from the simulator's image" in generator.description
        and "0.3" in generator.description
    )
    np.testing.assert_array_equal(
        generator.generate(generator.prepare(labels), 1, 5)[0].array, start[0].array
    )
    # Translation starts from the source image instead.
    source = start[1].with_array(start[1].array // 2)
    translated = generator.translate(source, generator.prepare(labels), 5)
    assert translated.same_geometry(labels)
    assert not np.array_equal(translated.array, start[0].array)
    with pytest.raises(InputError, match="source image's grid differs"):
        model.synthesize(labels, steps=10, strength=0.3, source=Volume(source.array, (2.0, 2.0, 1.0)))
    # Bad strengths, and a paired model, are refused before anything is written.
    command = ["synthesize", "--model", str(from_simulator), "--labels"]
    map_file = tmp_path / "map.nii.gz"
    write_label_map(labels, map_file)
    assert main([*command, str(map_file), "--steps", "10", "--out", str(tmp_path / "ok")]) == 0
    assert "not used" not in capsys.readouterr().err and (tmp_path / "ok" / "map_synth00.nii.gz").is_file()
    for bad in ("0", "1.5", "nan"):
        assert main([*command, str(map_file), "--out", str(tmp_path / "bad"), "--strength", bad]) == 2
        assert "strength" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    with pytest.raises(InputError, match="start_strength below 1 needs a label-conditioned model"):
        DENOISER.with_overrides({"conditioned": False, "start_strength": 0.5})


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_sampling_runs_the_networks_in_bf16_where_the_model_says_so(conditioned, phantom_2d):
    """On a GPU a model with ``mixed_precision`` samples under bf16 autocast (the samplers' arithmetic stays
    float32); on the CPU it samples in float32. Forced here on the CPU, where autocast works the same way:
    the networks compute in bf16 and the images stay close to the float32 ones."""
    model = LatentModel.load(conditioned.run / "model", "cpu")
    assert model.config.mixed_precision and not model.bf16  # the CPU: float32
    labels = phantom_2d.labels
    full = model.synthesize(labels, n=2, steps=4, seed=3, sampler="ddim", strength=0.5)
    dtypes = set()
    hooks = [
        network.register_forward_hook(lambda module, inputs, output: dtypes.add(output.dtype))
        for network in (model.denoiser, model.autoencoder.decoder, model.autoencoder.encoder)
    ]
    model.bf16 = True
    try:
        half = model.synthesize(labels, n=2, steps=4, seed=3, sampler="ddim", strength=0.5)
    finally:
        model.bf16 = False
        for hook in hooks:
            hook.remove()
    assert dtypes == {torch.bfloat16}
    for a, b in zip(full, half, strict=True):
        assert a.same_geometry(b)
        difference = np.abs(a.array.astype(float) - b.array.astype(float))
        assert 0 < difference.mean() < 1.0, difference.mean()  # of 255 grey levels; measured 0.1


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_synthesize_batches_images_across_maps_with_each_images_own_seed(
    from_simulator, tmp_path, capsys, monkeypatch
):
    """``synthesize`` over several maps draws one batch across maps (a network call per step for all of
    them, not one per map; issue 30), and each image is the one its map would get alone with its seed
    (the run's numbering), within one grey level."""
    from conftest import write_phantom_maps

    import EchoSynthLib.models.latent.pipeline as pipeline

    maps = write_phantom_maps(tmp_path / "maps", ("4CH", "2CH", "4CH"))
    batches, draw = [], pipeline.denoise

    def counting_draw(*args, **kwargs):
        batches.append(args[3])  # count
        return draw(*args, **kwargs)

    monkeypatch.setattr(pipeline, "denoise", counting_draw)
    command = ["synthesize", "--model", str(from_simulator), "--labels", str(tmp_path / "maps"), "--n", "2"]
    command += ["--seed", "7", "--steps", "4", "--out", str(tmp_path / "out")]
    assert main(command) == 0, capsys.readouterr().err
    assert batches == [6]  # 3 maps x 2 images in one batch
    model = LatentModel.load(from_simulator, "cpu")
    for index, labels in enumerate(maps):
        alone = model.synthesize(labels, n=2, steps=4, seed=7 + 2 * index)
        for k in range(2):
            drawn = read_image(tmp_path / "out" / f"m{index}_synth{k:02d}.nii.gz")
            assert drawn.same_geometry(labels)
            assert_within_one_grey_level(drawn.array, alone[k].array)
