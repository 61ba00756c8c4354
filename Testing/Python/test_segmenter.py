"""The label-adherence segmenter and the Dice report: training, package, prediction, adherence numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from EchoSynthLib.cli.main import main
from EchoSynthLib.data.labels import ECHOSYNTH, ClassLayout
from EchoSynthLib.engine.settings import RunSettings
from EchoSynthLib.metrics.dice import dice_per_structure
from EchoSynthLib.models.segmenter.network import Segmenter, SegmenterConfig
from EchoSynthLib.models.segmenter.trainer import SegmenterTrainer

CLASSES = ClassLayout.of(ECHOSYNTH)


def test_dice_per_structure_counts_overlap_and_ignores_absent_structures():
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[0, :2, :2] = 1  # 4 cavity pixels in case 0; case 1 has no cavity
    predicted = truth.copy()
    predicted[0, 0, 0] = 0  # 3 of 4 found
    scores = dice_per_structure(predicted, truth, CLASSES)
    assert scores["lv_cavity"][0] == pytest.approx(2 * 3 / (3 + 4))
    assert np.isnan(scores["lv_cavity"][1]) and np.isnan(scores["left_atrium"]).all()


@pytest.fixture(scope="module")
def segmenter_run(tiny_cache, tmp_path_factory):
    run = tmp_path_factory.mktemp("segmenter")
    config = SegmenterConfig(
        channels=(8, 16, 32),
        strides=(2, 2),
        num_res_units=1,
        batch_size=4,
    )
    settings = RunSettings(max_steps=6, workers=0, log_every=3, val_every=3, checkpoint_every=3)
    trainer = SegmenterTrainer(tiny_cache, run, config, "cpu", settings)
    trainer.fit()
    return run


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_segmenter_trains_resumes_and_loads(segmenter_run, tiny_cache):
    log = [json.loads(line) for line in (segmenter_run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3, 6] and "val_dice_lv_cavity" in log[-1]
    resumed = SegmenterTrainer(
        tiny_cache,
        segmenter_run,
        SegmenterConfig.from_dict(
            {
                k: v
                for k, v in json.loads((segmenter_run / "config.json").read_text()).items()
                if k != "classes"
            }
        ),
        device="cpu",
    )
    assert resumed.state.step == 6
    segmenter = Segmenter.load(segmenter_run / "model", device="cpu")
    predicted = segmenter.predict(torch.zeros((2, 1, 32, 32)))
    assert predicted.shape == (2, 32, 32) and set(np.unique(predicted)) <= {0, 1, 2, 3, 4}


def test_validate_reports_dice_for_synthetic_and_real(segmenter_run, tiny_cache, tmp_path, capsys):
    from EchoSynthLib.models.sdm.config import SDMConfig
    from EchoSynthLib.models.sdm.trainer import SDMTrainer

    config = SDMConfig.preset(
        32,
        channels=(32, 32, 32),
        attention_levels=(False, False, True),
        num_head_channels=32,
        spade_channels=16,
        batch_size=2,
    )
    settings = RunSettings(max_steps=1, workers=0, sample_every=1000, sample_steps=2)
    SDMTrainer(tiny_cache, tmp_path / "sdm", config, "cpu", settings).fit()
    report_path = tmp_path / "report.json"
    code = main(
        [
            "validate",
            "--model",
            str(tmp_path / "sdm" / "model"),
            "--segmenter",
            str(segmenter_run / "model"),
            "--data",
            str(tiny_cache),
            "--steps",
            "2",
            "--cases",
            "2",
            "--out",
            str(report_path),
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["cases"] == 2 and report["steps"] == 2
    assert set(report["dice_real"]) == {"lv_cavity", "lv_myocardium", "left_atrium"}
    assert all(0.0 <= v["mean"] <= 1.0 for v in report["dice_synthetic"].values())
    assert (
        main(
            [
                "validate",
                "--model",
                str(segmenter_run / "model"),
                "--segmenter",
                str(segmenter_run / "model"),
                "--data",
                str(tiny_cache),
            ]
        )
        == 2
    )
    assert "cannot be used for label map -> image" in capsys.readouterr().err
    # Any label map -> image generator is checked the same way (not only the SDM): the simulator here.
    args = ["validate", "--model", "simulator", "--segmenter", str(segmenter_run / "model")]
    assert main([*args, "--data", str(tiny_cache), "--cases", "2", "--out", str(tmp_path / "sim.json")]) == 0
    simulated = json.loads((tmp_path / "sim.json").read_text())
    assert simulated["cases"] == 2 and "simulator" in simulated["generator"]
