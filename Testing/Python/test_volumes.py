"""A 2D model on a 3D map, plane by plane (``--plane volume``, issue 34 section 2)."""

from __future__ import annotations

import numpy as np
import pytest

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.cli.main import main
from EchoSynthLib.data.io import read_image, write_label_map
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.planes import slice_of
from EchoSynthLib.inference.generators import GeneratorSettings, PlaneByPlaneGenerator, open_generator

HEART = [Structure.LV_CAVITY.label, Structure.LV_MYOCARDIUM.label]


@pytest.fixture(scope="module")
def map_3d(tmp_path_factory):
    labels = phantom_label_map("3D", "ED", seed=1, grid=PhantomGrid.for_view("3D", size=24)).labels
    return labels, write_label_map(labels, tmp_path_factory.mktemp("maps") / "heart3d.nii.gz")


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_synthesize_draws_every_heart_plane_with_the_images_seed(tiny_adversarial, map_3d, tmp_path, capsys):
    """``synthesize --plane volume`` with a 2D model on a 3D map: one 3D image on the map's grid; every ij
    plane with heart is the model's image of that plane alone with the image's seed (the same noise in
    every plane: fails where planes take seeds of their own), planes without heart black; image 1 uses
    seed + 1 (another volume)."""
    from conftest import assert_within_one_grey_level

    labels, path = map_3d
    package = str(tiny_adversarial.run / "model")
    command = ["synthesize", "--model", package, "--labels", str(path), "--plane", "volume", "--n", "2"]
    assert main([*command, "--seed", "5", "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    volumes = [read_image(tmp_path / "out" / f"heart3d_synth{k:02d}.nii.gz") for k in range(2)]
    assert all(v.same_geometry(labels) and v.array.dtype == np.uint8 for v in volumes)
    plane_model = open_generator(GeneratorSettings(package, device="cpu"))
    heart = [k for k in range(labels.size[2]) if np.isin(slice_of(labels, k).array, HEART).any()]
    assert 2 < len(heart) < labels.size[2]
    for k in range(labels.size[2]):
        if k not in heart:
            assert not volumes[0].array[k].any()
            continue
        alone = plane_model.generate(plane_model.prepare(slice_of(labels, k)), 1, 5)[0]
        assert_within_one_grey_level(volumes[0].array[k], alone.array[0])
    middle = heart[len(heart) // 2]
    second = plane_model.generate(plane_model.prepare(slice_of(labels, middle)), 1, 6)[0]
    assert_within_one_grey_level(volumes[1].array[middle], second.array[0])
    assert (volumes[1].array[middle] != volumes[0].array[middle]).any()


def test_plane_volume_is_refused_for_a_2d_map(tiny_adversarial, tmp_path, capsys):
    """A 2D map with ``--plane volume``: one line naming the problem, exit 2, nothing written."""
    from conftest import write_phantom_maps

    maps = write_phantom_maps(tmp_path / "maps", ("4CH",))
    del maps
    command = ["synthesize", "--model", str(tiny_adversarial.run / "model"), "--plane", "volume"]
    code = main([*command, "--labels", str(tmp_path / "maps"), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and "2D" in error[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_simulator_and_3d_models_draw_the_whole_map_without_a_wrapper(tiny_adversarial):
    """Only a 2D model is wrapped; the simulator already draws a 3D map whole. ``--slice`` with ``--plane
    volume`` is refused (it would make every plane's map a refused one, and the volume black)."""
    from EchoSynthLib.errors import InputError

    wrapped = open_generator(GeneratorSettings(str(tiny_adversarial.run / "model"), plane="volume"))
    assert isinstance(wrapped, PlaneByPlaneGenerator)
    with pytest.raises(InputError, match="--slice picks one plane"):
        open_generator(GeneratorSettings(str(tiny_adversarial.run / "model"), plane="volume", slice_index=3))
    simulator = open_generator(GeneratorSettings("simulator", plane="volume"))
    assert not isinstance(simulator, PlaneByPlaneGenerator)
