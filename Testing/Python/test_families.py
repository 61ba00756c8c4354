"""Model families: the registry, and a toy family added from outside the library that trains, packages,
is listed, and is used by ``synthesize`` and by the worker without touching any other module."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from EchoSynthLib.cli.main import main
from EchoSynthLib.errors import InputError
from EchoSynthLib.store.families import (
    LABELS_TO_IMAGE,
    PLUGINS_ENV,
    Family,
    families,
    family_named,
    family_of_kind,
    register,
    require_task,
)

# A whole family in one module: settings, network, trainer and generator. Its "network" is one brightness
# per structure; training fits it to the cache's images.
TOY = """
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from EchoSynthLib.cache.dataset import CachedPairs
from EchoSynthLib.cache.store import CacheIndex
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.store.families import LABELS_TO_IMAGE, Family, register
from EchoSynthLib.store.package import load_weights, read_package_config, save_package
from EchoSynthLib.engine.settings import SettingsMixin, split_settings
from EchoSynthLib.training.runs import StepTrainer, TrainState, run_config

FAMILY = register(Family("toy", "toy2d", LABELS_TO_IMAGE, __name__))


@dataclass(frozen=True)
class ToyConfig(SettingsMixin):
    classes: int = 5
    batch_size: int = 4
    learning_rate: float = 0.5
    seed: int = 0


class ToyTrainer(StepTrainer):
    def __init__(self, data, run, config, device, settings):
        self.cache, self.run, self.device = CacheIndex.open(data), Path(run), torch.device("cpu")
        self.config, self.settings = run_config(self.run, config), settings
        self.train_set = CachedPairs(self.cache, "train")
        model = torch.nn.Embedding(self.config.classes, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=self.config.learning_rate)
        self.state = TrainState.single(model, optimizer)
        self.open_run()

    def train_step(self, batch, step):
        labels, images = batch["labels"].long().clamp(max=self.config.classes - 1), batch["image"]
        loss = ((self.state.model(labels)[..., 0] - images) ** 2).mean()
        self.state.optimizer.zero_grad()
        loss.backward()
        self.state.optimizer.step()
        return {"loss": loss.item()}

    def export(self):
        return save_package(self.run / "model", FAMILY.kind, self.config.as_dict(),
                            self.state.model.state_dict(), "# toy\\n", {"steps": self.state.step})


@dataclass
class ToyGenerator:
    brightness: np.ndarray
    description: str = "toy model"

    def prepare(self, labels):
        return labels

    def generate(self, labels, n, seed, progress=None):
        grey = (self.brightness[np.clip(labels.array, 0, len(self.brightness) - 1)] + 1) * 127.5
        return [labels.with_array(np.clip(grey, 0, 255).astype(np.uint8)) for _ in range(n)]


def build_trainer(data, run, settings, device):
    values, run_settings = split_settings(settings, ToyConfig, {"max_steps": 5, "workers": 0, "log_every": 1})
    return ToyTrainer(data, run, ToyConfig.from_dict(values), device, run_settings)


def build_generator(folder, settings, warn=None):
    config = ToyConfig.from_dict(read_package_config(folder, FAMILY.kind))
    model = torch.nn.Embedding(config.classes, 1)
    load_weights(folder, model)
    return ToyGenerator(model.weight.detach().numpy()[:, 0])
"""


def test_the_built_in_families_and_their_tasks():
    names = {f.name: f for f in families()}
    assert {"sdm", "segmenter"} <= set(names)
    assert family_of_kind("sdm2d") is names["sdm"] and names["sdm"].task == LABELS_TO_IMAGE
    assert family_of_kind("nothing") is None
    with pytest.raises(InputError, match="unknown model family 'gan'"):
        family_named("gan")
    with pytest.raises(InputError, match="cannot be used for label map -> image"):
        require_task("segmenter2d", LABELS_TO_IMAGE, "x")
    with pytest.raises(InputError, match="unknown task"):
        register(Family("odd", "odd2d", "image -> poem", "nowhere"))
    with pytest.raises(InputError, match="belongs to 'sdm'"):
        register(Family("copy", "sdm2d", LABELS_TO_IMAGE, "nowhere"))


def test_the_registry_and_the_settings_import_no_torch():
    code = (
        "import sys, EchoSynthLib.store.families as f, EchoSynthLib.models.sdm.config as c; f.families(); "
        "c.SDMConfig.preset(64); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_toy_family_trains_packages_lists_and_synthesizes(tiny_cache, tmp_path, monkeypatch, capsys):
    from EchoSynthLib.store import families as registry

    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))  # the toy family is this test's
    monkeypatch.delitem(sys.modules, "toyfamily", raising=False)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "toyfamily.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(plugins))
    monkeypatch.setenv("PYTHONPATH", str(plugins))  # worker processes import it too
    monkeypatch.setenv(PLUGINS_ENV, "toyfamily")
    monkeypatch.setenv("ECHOSYNTH_CACHE_DIR", str(tmp_path / "models"))
    run = tmp_path / "run"
    assert main(["train", "toy", "--data", str(tiny_cache), "--out", str(run)]) == 0
    assert "step 0 of 5" in capsys.readouterr().out
    assert main(["models", "add", str(run / "model"), "--name", "toy-model"]) == 0
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    assert "toy2d" in capsys.readouterr().out
    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.data.io import read_image, write_label_map

    labels = phantom_label_map("4CH", "ED", seed=1, grid=PhantomGrid.for_view("4CH", size=40)).labels
    write_label_map(labels, tmp_path / "map.nii.gz")
    args = ["synthesize", "--model", "toy-model", "--labels", str(tmp_path / "map.nii.gz"), "--n", "2"]
    assert main([*args, "--out", str(tmp_path / "cli")]) == 0
    image = read_image(tmp_path / "cli" / "map_synth01.nii.gz")
    assert image.same_geometry(labels) and len(set(image.array.ravel().tolist())) > 1  # learnt brightness

    from EchoSynthLib.jobs.launcher import JobProcess
    from EchoSynthLib.jobs.spec import JobSpec, read_result
    from EchoSynthScene.models import generator_choices

    assert any("toy-model" in choice.label for choice in generator_choices())
    job = tmp_path / "job"
    job.mkdir()
    write_label_map(labels, job / "in.nrrd")
    JobSpec(inputs=("in.nrrd",), generator="toy-model").write(job)
    JobProcess(job).wait(timeout=120)
    (result,), _ = read_result(job)
    worker_image = read_image(job / result.images[0])
    assert (worker_image.array == image.array).all()


def test_a_checkpoint_holds_every_named_network_optimizer_scheduler_and_ema(tmp_path):
    """Two networks with their own optimizers (a GAN's generator and discriminator), an EMA and a
    learning-rate scheduler come back exactly; the one-network names stay what existing runs have."""
    import torch

    from EchoSynthLib.training.runs import TrainState, load_checkpoint, save_checkpoint

    def make(seed: int) -> TrainState:
        torch.manual_seed(seed)
        generator, discriminator = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)
        optimizers = {
            "generator": torch.optim.Adam(generator.parameters(), lr=1e-3),
            "discriminator": torch.optim.Adam(discriminator.parameters(), lr=1e-3),
        }
        ema = torch.optim.swa_utils.AveragedModel(generator)
        schedulers = {"generator": torch.optim.lr_scheduler.StepLR(optimizers["generator"], 2)}
        networks = {"generator": generator, "discriminator": discriminator}
        return TrainState(networks, optimizers, 0, {"generator": ema}, schedulers)

    state = make(0)
    for _ in range(3):
        for name, network in state.networks.items():
            network(torch.randn(2, 4)).sum().backward()
            state.optimizers[name].step()
        state.schedulers["generator"].step()
        state.emas["generator"].update_parameters(state.networks["generator"])
    state.step = 3
    save_checkpoint(tmp_path, state)
    files = sorted(p.name for p in (tmp_path / "checkpoint").iterdir())
    assert files == sorted(["generator.safetensors", "discriminator.safetensors", "generator_ema.safetensors",
                            "optimizer_generator.pt", "optimizer_discriminator.pt", "scheduler_generator.pt",
                            "state.json"])  # fmt: skip
    restored = make(1)
    assert load_checkpoint(tmp_path, restored, torch.device("cpu")) == 3
    for name in state.networks:
        for key, value in state.networks[name].state_dict().items():
            assert torch.equal(restored.networks[name].state_dict()[key], value)
        saved, loaded = state.optimizers[name].state_dict(), restored.optimizers[name].state_dict()
        assert torch.equal(saved["state"][0]["exp_avg"], loaded["state"][0]["exp_avg"])
    assert restored.schedulers["generator"].state_dict() == state.schedulers["generator"].state_dict()
    ema_saved = state.emas["generator"].state_dict()
    assert all(torch.equal(restored.emas["generator"].state_dict()[k], v) for k, v in ema_saved.items())
    single = TrainState.single(
        torch.nn.Linear(2, 2), torch.optim.SGD([torch.zeros(1)], lr=1.0), torch.nn.Linear(2, 2)
    )
    assert set(single.weight_files()) == {"model", "ema"} and set(single.state_files()) == {"optimizer.pt"}
