"""The merge on padded canvases equals the merge at the image's own size."""

import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf.inference import canvas_merge
from swiderrnet_tf.postprocess import panoptic_merge

SETTINGS = dict(
    thing_classes=(1, 3, 4),
    label_divisor=1000,
    stuff_area_limit=6,
    nms_kernel=3,
    keep_k_centers=8,
    void_label=255,
)


def _random_outputs(rng, batch, height, width, num_classes=5):
    logits = rng.normal(0, 2, (batch, height, width, num_classes)).astype(np.float32)
    heatmap = (rng.uniform(0, 1, (batch, height, width, 1)) ** 4).astype(np.float32)
    offsets = rng.normal(0, 3, (batch, height, width, 2)).astype(np.float32)
    return logits, heatmap, offsets


def test_canvas_merge_equals_merge_at_image_size():
    # Without XLA here (the export tests compile it); the padding is what is tested.
    merge = canvas_merge.CanvasMerge(5, (16, 8, 32), jit_compile=False, **SETTINGS)
    assert merge.sides == (8, 16, 32)
    spec = [tf.TensorSpec([None, None, None, c]) for c in (5, 1, 2)]
    traced = tf.function(merge.__call__, input_signature=spec)
    rng = np.random.default_rng(0)
    # Smaller than, equal to and between canvas sides; 1x1; many ties of the
    # row-major order between far-apart centers (wide image).
    sizes = [(5, 7), (8, 16), (13, 29), (32, 32), (1, 1), (17, 9), (3, 31)]
    instances = 0
    for height, width in sizes:
        outputs = _random_outputs(rng, 2, height, width)
        expected = panoptic_merge.panoptic_merge(*outputs, **SETTINGS)
        got = traced(*outputs)
        assert sorted(got) == sorted(expected)
        for key, value in expected.items():
            where = f"{key} {height}x{width}"
            np.testing.assert_allclose(got[key], value, rtol=1e-6, err_msg=where)
        instances += int(np.max(expected["instance"]))
    assert instances > 20  # the sizes exercise the instance numbering


def test_pad_class_must_not_collide_with_void():
    with pytest.raises(ValueError, match="void_label"):
        canvas_merge.CanvasMerge(255, (8,), **SETTINGS)
    with pytest.raises(ValueError, match="positive integers"):
        canvas_merge.CanvasMerge(5, (), **SETTINGS)
