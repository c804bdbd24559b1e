"""bfloat16 inference: hardware detection, fallback, the model, SavedModel and predict.

The SavedModel round trips (two exports, several loads: minutes on 2 cores) are
`slow`; `test_predict_chooses_the_signatures_of_its_precision` covers the
choice they exercise, on the metadata alone.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import logging
from PIL import Image

from swiderrnet_tf import predict
from swiderrnet_tf.inference import canvas_merge
from swiderrnet_tf.inference import export_lib
from swiderrnet_tf.inference import panoptic_predictor
from swiderrnet_tf.inference import precision
from swiderrnet_tf.inference import predictor
from swiderrnet_tf.inference import serving
from swiderrnet_tf.meta_arch import panoptic_deeplab
from swiderrnet_tf.tools import import_deeplab2
from tests.inference import conftest
from tests.inference import helpers

# /proc/cpuinfo excerpts: this project's AVX2-only EPYC, a Sapphire Rapids Xeon
# (AMX and AVX512-BF16), and an Arm Neoverse V1 (`bf16` among its features).
EPYC = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\nbugs\t\t: sysret_ss_attrs\n"
XEON = "flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
NEOVERSE = "Features\t: fp asimd sve bf16 i8mm\n"
MERGE_SETTINGS = panoptic_predictor.merge_settings(helpers.INFO, **conftest.MERGE)


def test_cpu_flags():
    assert precision.cpu_bfloat16_flags(EPYC) == ()
    assert precision.cpu_bfloat16_flags(XEON) == ("amx_bf16", "avx512_bf16")
    assert precision.cpu_bfloat16_flags(NEOVERSE) == ("bf16",)


def test_fallback_to_float32_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(precision, "bfloat16_supported", lambda: (False, "the CPU has no bf16"))
    caplog.set_level(logging.WARNING)
    assert precision.resolve_precision("bfloat16") == "float32"
    assert "falling back to float32" in caplog.text and "the CPU has no bf16" in caplog.text
    assert precision.resolve_precision("bfloat16", allow_emulated=True) == "bfloat16"
    assert precision.resolve_precision("float32") == "float32"
    monkeypatch.setattr(precision, "bfloat16_supported", lambda: (True, "the CPU has amx_bf16"))
    assert precision.resolve_precision("bfloat16") == "bfloat16"
    with pytest.raises(ValueError, match="--precision must be one of"):
        precision.resolve_precision("float16")


def _tiny_bfloat16_model():
    float32_model = helpers.tiny_model()
    with precision.policy_scope("bfloat16"):
        model = panoptic_deeplab.PanopticDeepLab.from_config(float32_model.get_config())
    model.set_weights(float32_model.get_weights())
    return float32_model, model


def test_bfloat16_model_convolves_in_bfloat16_and_returns_float32():
    previous = keras.mixed_precision.global_policy().name
    float32_model, model = _tiny_bfloat16_model()
    assert keras.mixed_precision.global_policy().name == previous  # restored
    assert precision.model_precision(model) == "bfloat16"
    assert precision.model_precision(float32_model) == "float32"
    images = helpers.random_images((1, 33, 45), seed=2)
    function = tf.function(lambda x: model(x, training=False), autograph=False)
    graph = function.get_concrete_function(tf.TensorSpec([1, 33, 45, 3], tf.uint8)).graph
    convolutions = [
        op for op in graph.get_operations() if op.type in ("Conv2D", "DepthwiseConv2dNative")
    ]
    final = [op for op in convolutions if "final_conv" in op.name]
    assert len(final) == 3  # the three heads' last 1x1 convolutions stay float32
    assert {op.inputs[0].dtype for op in final} == {tf.float32}
    rest = [op for op in convolutions if op not in final]
    assert len(rest) > 30 and {op.inputs[0].dtype for op in rest} == {tf.bfloat16}
    outputs = function(images)
    assert {v.dtype for v in outputs.values()} == {tf.float32}
    with precision.computing_in(model, "float32"):
        switched = model(images, training=False)
    expected = float32_model(images, training=False)
    for key in expected:
        np.testing.assert_allclose(switched[key], expected[key], rtol=1e-5, atol=1e-5)
    assert precision.model_precision(model) == "bfloat16"  # switched back


def test_predict_chooses_the_signatures_of_its_precision(monkeypatch):
    metadata = export_lib.build_metadata(
        helpers.INFO,
        merge=canvas_merge.CanvasMerge(helpers.INFO.num_classes, (64,), **MERGE_SETTINGS),
        scales=(1.0,),
        flip=False,
        category_ids=range(helpers.INFO.num_classes),
        model_name="m",
        num_parameters=1,
        precision="bfloat16",
    )
    bf16 = {"images": "serving_default", "bytes": "serving_bytes"}
    assert metadata["signatures"] == bf16
    monkeypatch.setattr(precision, "bfloat16_supported", lambda: (True, "the CPU has amx_bf16"))
    assert predictor.choose_signatures(metadata, None, False) == ("bfloat16", bf16)
    assert predictor.choose_signatures(metadata, "float32", False) == (
        "float32",
        serving.FLOAT32_SIGNATURES,
    )
    monkeypatch.setattr(precision, "bfloat16_supported", lambda: (False, "the CPU has no bf16"))
    assert predictor.choose_signatures(metadata, None, False) == (
        "float32",
        serving.FLOAT32_SIGNATURES,
    )
    assert predictor.choose_signatures(metadata, None, True) == ("bfloat16", bf16)
    float32_metadata = {**metadata, "precision": "float32"}
    del float32_metadata["float32_signatures"]
    # A SavedModel written before precisions existed has no `precision`: float32.
    del float32_metadata["precision"]
    assert predictor.choose_signatures(float32_metadata, None, True) == ("float32", bf16)
    with pytest.raises(ValueError, match="exported in float32.*--precision=bfloat16"):
        predictor.choose_signatures(float32_metadata, "bfloat16", True)


@pytest.fixture(scope="module")
def exported_bfloat16(tmp_path_factory):
    float32_model, model = _tiny_bfloat16_model()
    directory = str(tmp_path_factory.mktemp("export_bf16") / "saved_model")
    # One merge canvas (the shared fixture has four): the tracing is what costs.
    export_lib.export_saved_model(
        model, helpers.INFO, directory, canvas_sides=(64,), **conftest.MERGE
    )
    return float32_model, directory


@pytest.mark.slow
def test_bfloat16_saved_model_has_float32_signatures_of_the_same_weights(
    exported_bfloat16, exported
):
    _, directory = exported_bfloat16
    _, float32_directory = exported
    metadata = export_lib.read_metadata(directory)
    assert metadata["precision"] == "bfloat16"
    assert metadata["float32_signatures"] == serving.FLOAT32_SIGNATURES
    assert export_lib.read_metadata(float32_directory)["precision"] == "float32"
    loaded = tf.saved_model.load(directory)
    images = tf.constant(helpers.random_images((1, 37, 53), seed=6))
    bf16 = loaded.signatures["serving_default"](images=images)
    fallback = loaded.signatures["serving_float32"](images=images)
    reference = tf.saved_model.load(float32_directory).signatures["serving_default"](images=images)
    assert bf16["semantic_probabilities"].dtype == tf.float32
    # The float32 signatures are the float32 model: same maps as a float32 export.
    for key in ("panoptic", "semantic", "instance"):
        np.testing.assert_array_equal(fallback[key], reference[key])
    np.testing.assert_allclose(
        fallback["semantic_probabilities"], reference["semantic_probabilities"], atol=1e-5
    )

    # One copy of the weights for both precisions: as many values as the float32 export.
    def saved_values(folder):
        prefix = f"{folder}/variables/variables"
        return sum(int(np.prod(shape)) for _, shape in tf.train.list_variables(prefix))

    assert saved_values(directory) == saved_values(float32_directory)


@pytest.mark.slow
def test_predict_falls_back_to_the_float32_signatures(
    exported_bfloat16, exported, tmp_path, monkeypatch, caplog
):
    _, directory = exported_bfloat16
    _, float32_directory = exported
    image = helpers.random_images((1, 30, 41), seed=8)[0]
    Image.fromarray(image).save(tmp_path / "a.png")
    monkeypatch.setattr(precision, "bfloat16_supported", lambda: (False, "the CPU has no bf16"))
    caplog.set_level(logging.INFO)
    runs = {}
    for name, saved_model in (("fallback", directory), ("float32", float32_directory)):
        predict.predict(
            model=saved_model,
            image_patterns=[str(tmp_path / "a.png")],
            output_dir=str(tmp_path / name),
        )
        runs[name] = json.loads((tmp_path / name / "panoptic.json").read_text())["annotations"]
    assert "falling back to float32" in caplog.text and "serving_float32" in caplog.text
    assert runs["fallback"] == runs["float32"]
    with pytest.raises(predict.PredictError, match="exported in float32.*--precision=bfloat16"):
        predict.predict(
            model=float32_directory,
            image_patterns=[str(tmp_path / "a.png")],
            output_dir=str(tmp_path / "refused"),
            precision="bfloat16",
            allow_emulated_bfloat16=True,
        )


def test_commands_refuse_an_unknown_precision(capsys):
    from swiderrnet_tf import evaluate
    from swiderrnet_tf import export

    assert evaluate.run(gin_files=[], checkpoint="runs/x", precision="float16") == 2
    assert "--precision must be one of ('float32', 'bfloat16'), got 'float16'" in (
        capsys.readouterr().err
    )
    status = export.run(gin_files=[], checkpoint="runs/x", output="out", precision="fp8")
    assert status == 2 and "got 'fp8'" in capsys.readouterr().err


def test_deeplab2_fixture_in_bfloat16_within_the_stated_tolerance(testdata):
    """deeplab2's float32 outputs, reproduced in bfloat16 within docs/latency.md's tolerance.

    The fixture's random weights amplify rounding: with 8 significant bits
    every layer adds ~0.2% relative error, and the backbone endpoints already
    differ by 2-5% on average. Tolerance: mean absolute error at most 4% of
    the output's largest magnitude, at least 85% of the pixels of the
    semantic argmax unchanged (measured: 1.3%, 3.0%, 1.1%; 90.5%).
    """
    fixture = testdata / "deeplab2_swidernet_tiny"
    with precision.policy_scope("bfloat16"):
        model = import_deeplab2.build_from_config(str(fixture / "config.textproto"))
    import_deeplab2.assign_from_checkpoint(model, str(fixture / "ckpt" / "ckpt-1000"))
    image = np.asarray(Image.open(fixture / "input.png"))[None]
    outputs = model(image, training=False)
    for key, name in (
        ("semantic_logits", "semantic_logits"),
        ("center_heatmap", "center_heatmap"),
        ("offsets", "offset_map"),
    ):
        reference = np.load(fixture / f"{name}.npy")
        actual = np.asarray(outputs[key]).reshape(reference.shape)
        error = np.abs(actual - reference).mean() / np.abs(reference).max()
        assert error < 0.04, (key, error)
    semantic = np.argmax(np.asarray(outputs["semantic_logits"]), axis=-1)
    agree = np.mean(semantic == np.load(fixture / "semantic_pred.npy"))
    assert agree > 0.85, agree
