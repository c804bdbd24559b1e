"""TFLite conversion of the network and of network + merge."""

import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf import common
from swiderrnet_tf.data import tfrecord
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


def test_int8_network_stays_close_to_float32(tmp_path):
    # Calibration images come through the records reader, as validation images do.
    model = helpers.tiny_model()
    size = (33, 45)
    calibration = helpers.random_images((8, *size), seed=6)
    with tf.io.TFRecordWriter(str(tmp_path / "val-00000-of-00001.tfrecord")) as writer:
        for i, image in enumerate(calibration):
            png = tf.io.encode_png(image).numpy()
            writer.write(tfrecord.encode_panoptic_example(png, "png", f"{i}", np.zeros(size)))
    representative = tflite.representative_images(str(tmp_path / "val-*"), size, count=8)
    np.testing.assert_array_equal(np.stack(representative), calibration)

    content = tflite.convert_to_tflite_int8(model, size, representative)
    # Really integer: every op between the input's quantize and the outputs'
    # dequantize runs on int8 tensors.
    details = tf.lite.Interpreter(model_content=content).get_tensor_details()
    kinds = {d["dtype"] for d in details}
    assert np.int8 in kinds and sum(d["dtype"] == np.float32 for d in details) <= 4, kinds
    images = helpers.random_images((1, *size), seed=7)
    got = tflite.run_tflite(content, images, with_merge=False, num_threads=2)
    expected = model(images, training=False)
    for key in tflite.output_names(with_merge=False):
        value = np.asarray(expected[key])
        # Stated tolerance: mean error within 5% of the float32 output's spread.
        error = np.abs(got[key] - value).mean()
        assert error <= 0.05 * (value.max() - value.min()), (key, error)
    # The semantic class (argmax, what the merge reads) agrees on most pixels.
    agree = np.mean(
        got[common.SEMANTIC_LOGITS].argmax(-1)
        == np.asarray(expected[common.SEMANTIC_LOGITS]).argmax(-1)
    )
    assert agree >= 0.9, agree
