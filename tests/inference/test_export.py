"""SavedModel export: reloads in plain TensorFlow and equals the eager model + merge."""

import io
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from swiderrnet_tf import common
from swiderrnet_tf.inference import canvas_merge
from swiderrnet_tf.inference import export_lib
from swiderrnet_tf.inference import multi_scale
from swiderrnet_tf.inference import serving
from swiderrnet_tf.postprocess import panoptic_merge
from tests.inference import conftest
from tests.inference import helpers

MERGE = conftest.MERGE
CANVAS_SIDES = conftest.CANVAS_SIDES
_EXACT = (common.PANOPTIC, common.SEMANTIC, common.INSTANCE, common.CENTER_POINTS)


def expected_outputs(outputs) -> dict:
    """Network outputs -> what the SavedModel returns, by the eager merge."""
    merged = panoptic_merge.panoptic_merge(
        outputs[common.SEMANTIC_LOGITS],
        outputs[common.CENTER_HEATMAP],
        outputs[common.OFFSETS],
        thing_classes=helpers.INFO.thing_classes,
        label_divisor=helpers.INFO.label_divisor,
        stuff_area_limit=helpers.INFO.stuff_area_limit,
        void_label=helpers.INFO.ignore_label,
        return_semantic_probabilities=True,
        **MERGE,
    )
    merged = {k: np.asarray(v) for k, v in merged.items()}
    merged[common.CENTER_HEATMAP] = np.asarray(outputs[common.CENTER_HEATMAP])[..., 0]
    return merged


def assert_outputs_equal(got: dict, expected: dict, prefix: str = "") -> None:
    keys = [k[len(prefix) :] for k in got if k.startswith(prefix)]
    assert sorted(expected) == sorted(k for k in keys if "/" not in k)
    for key, value in expected.items():
        if key in _EXACT:
            np.testing.assert_array_equal(got[prefix + key], value, err_msg=key)
        else:
            np.testing.assert_allclose(got[prefix + key], value, atol=2e-5, err_msg=key)


def _encode(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def plain_run(exported, tmp_path_factory):
    """Runs `plain_tf_serving.py` on the export once; returns (folder, images)."""
    _, saved_model = exported
    directory = tmp_path_factory.mktemp("plain_run")
    images = helpers.random_images((2, 37, 53))
    np.savez(directory / "inputs.npz", images=images)
    (directory / "a.png").write_bytes(_encode(images[0], "PNG"))
    (directory / "b.jpg").write_bytes(_encode(images[1], "JPEG"))
    helper = pathlib.Path(__file__).with_name("plain_tf_serving.py")
    # No PYTHONPATH: the program could not import swiderrnet_tf if it tried.
    subprocess.run(
        [sys.executable, str(helper), saved_model, str(directory)],
        check=True,
        capture_output=True,
        cwd=directory,
    )
    return directory, images


def test_reloads_in_plain_tensorflow_and_equals_eager(exported, plain_run):
    model, _ = exported
    directory, images = plain_run
    modules = json.loads((directory / "modules.json").read_text())
    assert not [m for m in modules if m.startswith("swiderrnet_tf")]
    got = dict(np.load(directory / "outputs.npz"))
    expected = expected_outputs(model(images, training=False))
    assert len(np.unique(expected[common.PANOPTIC])) > 5  # stuff, things and void
    assert expected[common.INSTANCE].max() > 1
    assert_outputs_equal(got, expected, "images/")
    # PNG is lossless: the bytes signature sees the same pixels (sent twice).
    one = {k: v[:1] for k, v in expected.items()}
    for b in range(2):
        assert_outputs_equal({k: v[b : b + 1] for k, v in got.items()}, one, "a.png/")
    # JPEG: the bytes signature decodes as tf.io.decode_image does, which reads
    # what PIL reads up to their chroma upsampling (a few levels at colour edges).
    for key in expected:
        np.testing.assert_allclose(
            got[f"b.jpg/{key}"][:1], got[f"b.jpg/decoded/{key}"], rtol=1e-5, atol=1e-6
        )
    decoded = np.asarray(Image.open(directory / "b.jpg").convert("RGB"), np.float32)
    assert np.abs(decoded - got["b.jpg/decoded/pixels"][0]).mean() < 4


def test_bad_inputs_give_clear_errors(plain_run):
    directory, _ = plain_run
    errors = json.loads((directory / "errors.json").read_text())
    expected = {
        "channels": "images must have 3 (RGB) channels",
        "rank": "images must be a 4-D uint8 tensor",
        "empty_image": "at least 1x1 pixels",
        "too_large": "larger than 64 pixels",
        "empty_bytes": "image_bytes[i] is empty for i =] [1]",
        "not_an_image": "is not a JPEG, PNG, GIF or BMP file",
        "no_bytes": "at least one encoded image",
        "sizes_differ": "the images of one call must have the same size",
    }
    for name, phrase in expected.items():
        assert phrase in errors[name], (name, errors[name][:500])


def test_metadata_describes_the_classes(exported):
    _, saved_model = exported
    metadata = export_lib.read_metadata(saved_model)
    info = helpers.INFO
    assert metadata["class_names"] == list(info.class_names)
    assert metadata["colors"] == [list(c) for c in info.colors]
    assert metadata["is_thing"] == [False, False, False, True, True, True]
    assert metadata["category_ids"] == list(range(6))
    assert metadata["label_divisor"] == 1000 and metadata["void_panoptic_id"] == 255000
    assert metadata["merge"]["keep_k_centers"] == 16
    assert metadata["canvas_sides"] == list(CANVAS_SIDES)


def test_multi_scale_serving_equals_eager():
    # The module that export saves (saving itself is tested above), called in
    # process: multi-scale + flip in the graph equals the eager functions.
    model = helpers.tiny_model(seed=7)
    info = helpers.INFO
    merge = canvas_merge.CanvasMerge(
        info.num_classes,
        (40,),
        thing_classes=info.thing_classes,
        label_divisor=info.label_divisor,
        stuff_area_limit=info.stuff_area_limit,
        void_label=info.ignore_label,
        jit_compile=False,
        **MERGE,
    )
    module = serving.PanopticServingModule(model, merge, scales=(0.75, 1.0), flip=True)
    images = helpers.random_images((1, 33, 39), seed=3)
    got = {k: v.numpy() for k, v in module.serve_images(tf.constant(images)).items()}
    predict_fn = multi_scale.multi_scale_predict_fn(model, scales=(0.75, 1.0), flip=True)
    expected = expected_outputs(predict_fn(images))
    assert expected[common.INSTANCE].max() > 0
    assert_outputs_equal(got, expected)


def test_refuses_mismatched_classes_and_full_directories(exported, tmp_path):
    model, saved_model = exported
    with pytest.raises(ValueError, match="predicts 6 classes but dataset 'cityscapes' has 19"):
        from swiderrnet_tf.data import dataset_info

        export_lib.export_saved_model(model, dataset_info.CITYSCAPES, str(tmp_path / "x"))
    with pytest.raises(ValueError, match="is not empty"):
        export_lib.export_saved_model(model, helpers.INFO, saved_model)
