"""Image and segmentation IO: exact round trips, clear errors, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from EchoSynthLib.data.io import (
    Segment,
    read_image,
    read_label_map,
    read_segmentation,
    write_image,
    write_label_map,
    write_segmentation,
)
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

OBLIQUE = tuple(np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).ravel())


def _volume_3d(dtype=np.int16) -> Volume:
    rng = np.random.default_rng(0)
    array = rng.integers(-500, 500, size=(5, 7, 9)).astype(dtype)
    return Volume(array, (0.5, 0.75, 2.0), (-10.0, 3.5, 40.25), OBLIQUE)


def _assert_same(a: Volume, b: Volume) -> None:
    assert a.array.dtype == b.array.dtype
    np.testing.assert_array_equal(a.array, b.array)
    assert a.same_geometry(b, tolerance=1e-9)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_3d_round_trip_is_exact(tmp_path, suffix):
    volume = _volume_3d()
    path = write_image(volume, tmp_path / f"vol{suffix}")
    _assert_same(volume, read_image(path))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_2d_single_slice_round_trip_is_exact(tmp_path, suffix):
    volume = Volume.from_2d(np.arange(35, dtype=np.uint8).reshape(5, 7), (0.3, 0.6), (1.5, -2.0))
    back = read_image(write_image(volume, tmp_path / f"img{suffix}"))
    assert back.is_2d
    _assert_same(volume, back)


def test_png_keeps_values_and_spacing(tmp_path):
    volume = Volume.from_2d(np.arange(35, dtype=np.uint8).reshape(5, 7), (0.3, 0.6))
    back = read_image(write_image(volume, tmp_path / "img.png"))
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.spacing[:2], (0.3, 0.6), rtol=1e-3)


def test_png_rejects_3d_and_float(tmp_path):
    with pytest.raises(InputError, match="PNG"):
        write_image(_volume_3d(np.uint8), tmp_path / "x.png")
    with pytest.raises(InputError, match="PNG"):
        write_image(Volume.from_2d(np.zeros((4, 4), np.float32)), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_plain_2d_file_becomes_single_slice_volume(tmp_path):
    image = sitk.GetImageFromArray(np.ones((6, 4), np.uint8))
    image.SetSpacing((0.2, 0.4))
    sitk.WriteImage(image, str(tmp_path / "plain.nrrd"))
    volume = read_image(tmp_path / "plain.nrrd")
    assert volume.array.shape == (1, 6, 4)
    assert volume.spacing[:2] == pytest.approx((0.2, 0.4))


def test_segmentation_round_trip_keeps_names_colours_geometry(tmp_path):
    labels = _volume_3d(np.uint8).with_array(
        np.random.default_rng(1).integers(0, 3, (5, 7, 9)).astype(np.uint8)
    )
    segments = [Segment(1, "LV cavity", (1.0, 0.0, 0.0)), Segment(2, "Myocardium", (0.0, 1.0, 0.0))]
    path = write_segmentation(labels, segments, tmp_path / "seg.seg.nrrd")
    back, back_segments = read_segmentation(path)
    _assert_same(labels, back)
    assert [(s.value, s.name) for s in back_segments] == [(1, "LV cavity"), (2, "Myocardium")]
    assert back_segments[1].color == pytest.approx((0.0, 1.0, 0.0))


def test_label_map_segments_map_by_name(tmp_path):
    labels = Volume(np.array([[[0, 1, 2, 3]]], np.uint8))
    segments = [Segment(1, "MYO"), Segment(2, "left ventricle"), Segment(3, "la")]
    write_segmentation(labels, segments, tmp_path / "s.seg.nrrd")
    canonical = read_label_map(tmp_path / "s.seg.nrrd")
    np.testing.assert_array_equal(canonical.array, [[[0, 2, 1, 3]]])


def test_write_label_map_as_segmentation_names_structures(tmp_path, phantom_2d):
    path = write_label_map(phantom_2d.labels, tmp_path / "p.seg.nrrd")
    _, segments = read_segmentation(path)
    assert {s.name for s in segments} == {"LV cavity", "LV myocardium", "Left atrium", "Ultrasound sector"}
    np.testing.assert_array_equal(read_label_map(path).array, phantom_2d.labels.array)


def test_overlapping_segments_are_refused(tmp_path):
    import slicerio

    segmentation = slicerio.create_segmentation((4, 4, 1), np.eye(4))
    mask = np.zeros((4, 4, 1), bool)
    mask[:2] = True
    slicerio.add_segment(segmentation, mask, {"name": "LV"})
    slicerio.add_segment(segmentation, mask, {"name": "MYO"})
    slicerio.write_segmentation(str(tmp_path / "o.seg.nrrd"), segmentation)
    with pytest.raises(InputError, match="overlapping"):
        read_segmentation(tmp_path / "o.seg.nrrd")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.nii.gz")
    (tmp_path / "corrupt.nii.gz").write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=r"corrupt\.nii\.gz: cannot be read"):
        read_image(tmp_path / "corrupt.nii.gz")
    (tmp_path / "bad.seg.nrrd").write_text("NRRD0004\ngarbage\n")
    with pytest.raises(InputError, match=r"bad\.seg\.nrrd"):
        read_segmentation(tmp_path / "bad.seg.nrrd")
    with pytest.raises(InputError, match="unsupported file type"):
        read_image(tmp_path / "image.jpg2")
    four_d = sitk.Image([3, 3, 3, 2], sitk.sitkUInt8)
    sitk.WriteImage(four_d, str(tmp_path / "t.nrrd"))
    with pytest.raises(InputError, match="4 dimensions"):
        read_image(tmp_path / "t.nrrd")


def test_failed_write_leaves_nothing_and_keeps_old_file(tmp_path):
    target = tmp_path / "img.nii.gz"
    good = _volume_3d(np.float32)
    write_image(good, target)
    bad = good.with_array(np.full(good.array.shape, np.nan, np.float32))
    with pytest.raises(InputError, match="NaN"):
        write_image(bad, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.nii.gz"]
    _assert_same(good, read_image(target))


def test_volume_rejects_bad_shapes_and_spacing():
    with pytest.raises(InputError, match="3 axes"):
        Volume(np.zeros((4, 4)))
    with pytest.raises(InputError, match="spacing"):
        Volume(np.zeros((1, 4, 4)), (1.0, 0.0, 1.0))
