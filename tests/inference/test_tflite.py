"""TFLite conversion of the network and of network + merge."""

import numpy as np
import pytest

from swiderrnet_tf import common
from swiderrnet_tf.inference import tflite
from swiderrnet_tf.postprocess import panoptic_merge
from tests.inference import helpers

SETTINGS = dict(
    thing_classes=helpers.INFO.thing_classes,
    label_divisor=helpers.INFO.label_divisor,
    stuff_area_limit=helpers.INFO.stuff_area_limit,
    nms_kernel=7,
    keep_k_centers=16,
)


@pytest.mark.parametrize("with_merge", [False, True])
def test_tflite_equals_the_keras_model(with_merge):
    model = helpers.tiny_model()
    images = helpers.random_images((1, 33, 45), seed=5)
    content = tflite.convert_to_tflite(
        model, (33, 45), merge_settings=SETTINGS if with_merge else None
    )
    got = tflite.run_tflite(content, images, with_merge)
    expected = model(images, training=False)
    if with_merge:
        expected = panoptic_merge.panoptic_merge(
            expected[common.SEMANTIC_LOGITS],
            expected[common.CENTER_HEATMAP],
            expected[common.OFFSETS],
            **SETTINGS,
        )
        assert np.asarray(expected[common.INSTANCE]).max() > 1
    assert sorted(got) == sorted(tflite.output_names(with_merge))
    for key in got:
        value = np.asarray(expected[key])
        if value.dtype.kind == "i":
            np.testing.assert_array_equal(got[key], value, err_msg=key)
        else:
            np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-4, err_msg=key)
