"""Label schema: dataset value maps, segment-name aliases and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from EchoSynthLib.data.labels import (
    CAMUS,
    ECHO_FROM_NOISE,
    ECHONET,
    MITEA,
    Structure,
    schema_named,
    structure_for_segment_name,
)
from EchoSynthLib.errors import InputError, UnknownLabelError


def test_camus_values_map_to_structures():
    camus = np.array([0, 1, 2, 3], np.uint8)
    canonical = CAMUS.to_canonical(camus)
    np.testing.assert_array_equal(
        canonical,
        [
            s.label
            for s in (
                Structure.BACKGROUND,
                Structure.LV_CAVITY,
                Structure.LV_MYOCARDIUM,
                Structure.LEFT_ATRIUM,
            )
        ],
    )


def test_mitea_order_and_round_trips():
    mitea = np.array([0, 1, 2], np.uint8)
    canonical = MITEA.to_canonical(mitea)
    np.testing.assert_array_equal(canonical, [0, Structure.LV_MYOCARDIUM.label, Structure.LV_CAVITY.label])
    np.testing.assert_array_equal(MITEA.from_canonical(canonical), mitea)
    efn = np.array([0, 1, 2, 3, 4], np.uint8)
    np.testing.assert_array_equal(ECHO_FROM_NOISE.from_canonical(ECHO_FROM_NOISE.to_canonical(efn)), efn)


def test_sector_becomes_background_where_schema_has_none():
    canonical = np.array([Structure.SECTOR.label, Structure.LV_CAVITY.label], np.uint8)
    np.testing.assert_array_equal(CAMUS.from_canonical(canonical), [0, 1])


def test_missing_structure_in_target_schema_is_named():
    with pytest.raises(UnknownLabelError, match=r"echonet.*left_atrium"):
        ECHONET.from_canonical(np.array([Structure.LEFT_ATRIUM.label], np.uint8))


def test_unknown_values_are_named():
    with pytest.raises(UnknownLabelError, match=r"\[5, 7\].*'camus'"):
        CAMUS.to_canonical(np.array([0, 5, 7, 1]))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.array([0.0, np.nan]), "NaN"),
        (np.array([0.0, 0.5]), "non-integer"),
        (np.array([], np.uint8), "empty"),
    ],
)
def test_bad_label_arrays(bad, message):
    with pytest.raises(InputError, match=message):
        CAMUS.to_canonical(bad)


@pytest.mark.parametrize(
    ("name", "structure"),
    [
        ("LV", Structure.LV_CAVITY),
        ("Left Ventricle", Structure.LV_CAVITY),
        ("lv_endo", Structure.LV_CAVITY),
        ("MYO", Structure.LV_MYOCARDIUM),
        ("  Myocardium ", Structure.LV_MYOCARDIUM),
        ("LA", Structure.LEFT_ATRIUM),
        ("left-atrium", Structure.LEFT_ATRIUM),
        ("Sector", Structure.SECTOR),
    ],
)
def test_segment_name_aliases(name, structure):
    assert structure_for_segment_name(name) is structure


def test_unknown_segment_name_is_named():
    with pytest.raises(UnknownLabelError, match='"Right ventricle"'):
        structure_for_segment_name("Right ventricle")


def test_schema_lookup():
    assert schema_named("CAMUS") is CAMUS
    with pytest.raises(InputError, match="unknown label schema 'acdc'"):
        schema_named("acdc")
