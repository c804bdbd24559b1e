"""Tests for the dataset registry."""

import dataclasses

import pytest

from swiderrnet_tf.data import dataset_info


def test_cityscapes_facts():
    info = dataset_info.get_dataset_info("cityscapes")
    assert info.num_classes == 19
    assert info.thing_classes == tuple(range(11, 19))
    assert info.label_divisor == 1000
    assert info.stuff_area_limit == 2048
    assert info.eval_scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    assert info.void_panoptic_id == 255 * 1000
    assert info.stuff_classes == tuple(range(11))


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*cityscapes"):
        dataset_info.get_dataset_info("nope")


def test_inconsistent_info_is_rejected():
    info = dataset_info.get_dataset_info("cityscapes")
    with pytest.raises(ValueError, match="class_names has 2 entries"):
        dataclasses.replace(info, name="bad", class_names=("a", "b"))
    with pytest.raises(ValueError, match=r"thing_classes \[19\]"):
        dataclasses.replace(info, name="bad", thing_classes=(19,))
