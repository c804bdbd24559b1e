"""Importing the deeplab2 fixture checkpoint reproduces deeplab2's outputs."""

import json
import pathlib
import shutil

import numpy as np
import pytest
from PIL import Image

from swiderrnet_tf import common
from swiderrnet_tf.tools import deeplab2_config
from swiderrnet_tf.tools import import_deeplab2

TESTDATA = pathlib.Path(__file__).parents[1] / "testdata"
FIXTURE = TESTDATA / "deeplab2_swidernet_tiny"
CHECKPOINT = str(FIXTURE / "ckpt" / "ckpt-1000")
CONFIG = str(FIXTURE / "config.textproto")
# The same weights saved with per-variable optimizer slots (TF <= 2.10); its
# README counts 664 keys, 368 of them slots. Reference outputs: FIXTURE's.
LEGACY = TESTDATA / "deeplab2_swidernet_tiny_legacy_slots"
LEGACY_SLOTS = 368


def _relative_error(actual, reference):
    return np.abs(np.asarray(actual) - reference).max() / np.abs(reference).max()


@pytest.fixture(scope="module", params=[FIXTURE, LEGACY], ids=["tf2.11_slots", "legacy_slots"])
def imported(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported")
    report = import_deeplab2.import_checkpoint(
        checkpoint=str(request.param / "ckpt" / "ckpt-1000"),
        config=str(request.param / "config.textproto"),
        output=str(out),
    )
    return out, report, request.param


def test_import_reproduces_deeplab2_outputs(imported):
    out, report, fixture = imported
    meta = json.loads((FIXTURE / "meta.json").read_text())
    assert report["assigned"] == meta["n_model_variables"]
    assert len(report["optimizer_slots"]) == (LEGACY_SLOTS if fixture == LEGACY else 0)
    model = import_deeplab2.load_imported(out)
    image = np.asarray(Image.open(FIXTURE / "input.png"))[None]
    outputs = model(image, training=False)
    endpoints = model.backbone(image, training=False)
    for name in ("res2", "res3", "res4", "res5"):
        reference = np.load(FIXTURE / f"backbone_{name}.npy")
        assert _relative_error(endpoints[name], reference) < 1e-4, name
    pairs = [
        (common.SEMANTIC_LOGITS, "semantic_logits.npy"),
        (common.CENTER_HEATMAP, "center_heatmap.npy"),
        (common.OFFSETS, "offset_map.npy"),
    ]
    for key, filename in pairs:
        reference = np.load(FIXTURE / filename)
        actual = np.asarray(outputs[key]).reshape(reference.shape)
        assert _relative_error(actual, reference) < 1e-4, key


@pytest.mark.parametrize("fixture", [FIXTURE, LEGACY], ids=["tf2.11_slots", "legacy_slots"])
def test_backbone_only_import(tmp_path, fixture):
    report = import_deeplab2.import_checkpoint(
        checkpoint=str(fixture / "ckpt"),  # a directory resolves to its latest checkpoint
        backbone="swidernet_0.25_0.125_0.35",
        backbone_overrides={"output_stride": 16},
        backbone_only=True,
        output=str(tmp_path),
    )
    assert (tmp_path / "backbone.weights.h5").exists()
    assert any(key.startswith("semantic_decoder/") for key in report["skipped"])
    backbone = import_deeplab2.load_imported(tmp_path)
    image = np.asarray(Image.open(FIXTURE / "input.png"))[None]
    endpoints = backbone(image)
    for name in ("res2", "res3", "res4", "res5"):
        reference = np.load(FIXTURE / f"backbone_{name}.npy")
        assert _relative_error(endpoints[name], reference) < 1e-4, name


def test_mismatched_model_is_an_error_naming_the_variable(tmp_path):
    # Without squeeze-and-excitation the checkpoint's SE weights map to nothing.
    with pytest.raises(ValueError, match=r"'encoder/_stage1/_block1/_squeeze_and_excite/_se_conv"):
        import_deeplab2.import_checkpoint(
            checkpoint=CHECKPOINT,
            backbone="swidernet_0.25_0.125_0.35",
            backbone_overrides={"squeeze_excite": False},
            backbone_only=True,
            output=str(tmp_path),
        )
    # A wider stage 1 (w1 = 0.5: 4 * 16 channels instead of 4 * 8) makes shapes disagree.
    with pytest.raises(
        ValueError,
        match=r"'encoder/_stage1/_block1/_conv1_bn_act/_batch_norm/beta.*shape \[32\] but "
        r"model variable 'stage1_block1/conv1_bn_act/batch_norm/beta' has shape \[64\]",
    ):
        import_deeplab2.import_checkpoint(
            checkpoint=CHECKPOINT,
            backbone="swidernet_0.5_0.125_0.35",
            backbone_only=True,
            output=str(tmp_path),
        )


def test_model_variable_without_value_is_an_error(tmp_path):
    # A checkpoint holding only the backbone cannot fill a whole model.
    with pytest.raises(ValueError, match="have no value in the checkpoint"):
        import_deeplab2.assign_from_checkpoint(
            import_deeplab2.build_from_config(CONFIG), CHECKPOINT, backbone_only=True
        )
    missing = tmp_path / "nothing"
    with pytest.raises(FileNotFoundError, match="no checkpoint here"):
        import_deeplab2.import_checkpoint(checkpoint=str(missing), config=CONFIG, output="x")


@pytest.mark.parametrize(
    "key, path",
    [
        (
            "encoder/_stage5/_block1/_conv2_bn_act/_conv/_switch/kernel",
            "stage5_block1/conv2_bn_act/conv/switch/kernel",
        ),
        (
            "encoder/_stage5/_block1/_conv2_bn_act/_pre_global_context/convolution/bias",
            "stage5_block1/conv2_bn_act/pre_global_context/conv/bias",
        ),
        (
            "encoder/_stage2/_block1/_squeeze_and_excite/_se_conv/kernel",
            "stage2_block1/squeeze_excite/conv/kernel",
        ),
        (
            "semantic_decoder/_aspp/_aspp_pool/_conv_bn_act/_batch_norm/gamma",
            "semantic_decoder/aspp/aspp_pool/batch_norm/gamma",
        ),
        (
            "instance_decoder/_fusion_conv2/_conv1_bn_act/_depthwise/_depthwise_conv/depthwise_kernel",
            "instance_decoder/fusion_conv2/depthwise_conv/kernel",
        ),
        (
            "instance_regression_head_without_last_layer/_conv1_bn_act/_pointwise/_conv/kernel",
            "offset_head/conv_block/pointwise/conv/kernel",
        ),
        ("semantic_last_layer/bias", "semantic_head/final_conv/bias"),
    ],
)
def test_checkpoint_key_mapping(key, path):
    assert import_deeplab2.checkpoint_key_to_path(key + "/.ATTRIBUTES/VARIABLE_VALUE") == path


def test_non_model_keys_are_skipped():
    for key in (
        "global_step/.ATTRIBUTES/VARIABLE_VALUE",
        "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE",
        "encoder/_stage1/_block1/_conv1_bn_act/_batch_norm/beta/.OPTIMIZER_SLOT/optimizer/m"
        "/.ATTRIBUTES/VARIABLE_VALUE",
    ):
        assert import_deeplab2.checkpoint_key_to_path(key) is None


def test_text_proto_parser():
    text = """
    # comment
    name: "x"  model { size: 3 rates: 6 rates: 12 flag: true kind: STANDARD
      inner { value: 0.5 } }
    """
    parsed = deeplab2_config.parse_text_proto(text)
    assert parsed == {
        "name": "x",
        "model": {
            "size": 3,
            "rates": [6, 12],
            "flag": True,
            "kind": "STANDARD",
            "inner": {"value": 0.5},
        },
    }
    with pytest.raises(ValueError, match="missing '}'"):
        deeplab2_config.parse_text_proto("a { b: 1")


def test_config_rejects_other_backbones(tmp_path):
    bad = tmp_path / "config.textproto"
    bad.write_text(
        CONFIG and (FIXTURE / "config.textproto").read_text().replace('"swidernet"', '"resnet50"')
    )
    with pytest.raises(ValueError, match=r"config.textproto: .*'resnet50'; only 'swidernet'"):
        import_deeplab2.build_from_config(str(bad))


def _command_line(*arguments):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "swiderrnet_tf.tools.import_deeplab2", *arguments],
        capture_output=True,
        text=True,
        cwd=pathlib.Path(__file__).parents[2],
        check=False,
    )


def test_command_line_imports_a_checkpoint_with_legacy_slots(tmp_path):
    result = _command_line(
        f"--checkpoint={LEGACY / 'ckpt'}",
        f"--config={LEGACY / 'config.textproto'}",
        f"--output={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    assert "imported 288 variables" in result.stdout
    assert f"and {LEGACY_SLOTS} per-variable optimizer slots skipped" in result.stdout
    report = (tmp_path / "import_report.txt").read_text()
    assert "global_step" in report
    assert f"skipped per-variable optimizer slots (.OPTIMIZER_SLOT): {LEGACY_SLOTS}" in report
    shutil.rmtree(tmp_path)
