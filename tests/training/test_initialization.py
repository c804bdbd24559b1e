"""Initialisation from ImageNet runs, panoptic runs and imported deeplab2 models."""

import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from swiderrnet_tf import common
from swiderrnet_tf.backbones import registry
from swiderrnet_tf.meta_arch import panoptic_deeplab
from swiderrnet_tf.tools import import_deeplab2
from swiderrnet_tf.training import checkpointing
from swiderrnet_tf.training import init_explain
from swiderrnet_tf.training import initialization

BACKBONE = "swidernet_0.25_0.25_0.35"
NARROW = dict(aspp_channels=8, semantic_decoder_channels=8, instance_decoder_channels=8)
# Written out here rather than taken from the code under test.
HEAD = {"semantic_head/final_conv/kernel", "semantic_head/final_conv/bias"}
CLASSIFIER = {"classifier/kernel", "classifier/bias"}
DEEPLAB2 = pathlib.Path(__file__).parents[1] / "testdata" / "deeplab2_swidernet_tiny"


def _build(num_classes=6, regime="strong", backbone=BACKBONE, **backbone_options):
    return panoptic_deeplab.build_panoptic_deeplab(
        backbone, num_classes, regime=regime, backbone_options=backbone_options, **NARROW
    )


def _values(model) -> dict:
    return {w.path: w.numpy() for w in model.weights if "seed_generator" not in w.path}


def _randomize(model, seed) -> dict:
    """Gives every weight a random value no initialiser produces; returns them."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(size=w.shape).astype("float32")
        w.assign(np.abs(value) + 0.5 if "moving_variance" in w.path else value)
    return _values(model)


def _save_run(model, directory, step) -> str:
    """A training checkpoint as the trainer writes it: model, optimizer, step."""
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    step = tf.Variable(step, dtype=tf.int64)
    keeper = checkpointing.TrainCheckpoints(
        model=model, optimizer=optimizer, step=step, model_dir=str(directory), max_to_keep=1
    )
    return keeper.save()


@pytest.fixture(scope="module")
def imagenet_run(tmp_path_factory):
    """An ImageNet pre-training checkpoint: the SWideRNet with a 10-class classifier."""
    network = registry.create_backbone(BACKBONE, classification_classes=10)
    values = _randomize(network, seed=1)
    directory = tmp_path_factory.mktemp("imagenet_run")
    return str(directory), _save_run(network, directory, step=100), values


@pytest.fixture(scope="module")
def panoptic_run(tmp_path_factory):
    """A panoptic training checkpoint with 6 classes."""
    model = _build()
    values = _randomize(model, seed=2)
    directory = tmp_path_factory.mktemp("panoptic_run")
    _save_run(model, directory, step=50)
    # The same weights as a user's own `save_weights`, with no config beside them.
    weights_file = tmp_path_factory.mktemp("saved") / "mine.weights.h5"
    model.save_weights(weights_file)
    return str(directory), values, {w.path for w in model.backbone.weights}, str(weights_file)


def _assert_loaded(after, before, source, loaded):
    for path in after:
        if path in loaded:
            assert not np.array_equal(before[path], source[path]), f"{path} was equal already"
            np.testing.assert_array_equal(after[path], source[path], err_msg=path)
        else:
            np.testing.assert_array_equal(after[path], before[path], err_msg=path)


def test_imagenet_run_fills_the_backbone_and_skips_the_classifier(imagenet_run):
    directory, prefix, source = imagenet_run
    assert prefix.endswith("ckpt-100")
    model = _build()
    before = _values(model)
    backbone = {w.path for w in model.backbone.weights}
    report = initialization.initialize_model(model, directory, scope="backbone")
    assert report.source == prefix
    assert sorted(report.loaded) == sorted(backbone)
    assert set(report.skipped) == CLASSIFIER
    assert report.missing == []
    _assert_loaded(_values(model), before, source, backbone)
    text = initialization.format_report(report)
    assert "classifier" in text and "ImageNet classifier" in text
    row = next(line for line in text.splitlines() if line.split()[:1] == ["backbone"])
    assert row.split() == ["backbone", str(len(backbone)), "0", "0"]


def test_imagenet_run_cannot_fill_the_decoders(imagenet_run):
    _, prefix, _ = imagenet_run
    model = _build()
    before = _values(model)
    with pytest.raises(ValueError, match=r"have no value in it, e\.g\. \['semantic_decoder/"):
        initialization.initialize_model(model, prefix, scope="all_but_heads")
    _assert_loaded(_values(model), before, before, set())  # nothing half-written
    report = initialization.initialize_model(model, prefix, scope="all_but_heads", strict=False)
    decoders_and_heads = {p for p in before if p not in {w.path for w in model.backbone.weights}}
    assert set(report.missing) == decoders_and_heads - HEAD
    assert {p for p, r in report.kept.items() if r == "outside scope 'all_but_heads'"} == HEAD


def test_panoptic_run_scopes(panoptic_run):
    directory, source, backbone, _ = panoptic_run
    model = _build()
    before = _values(model)
    # Each scope copies a superset of the previous one.
    for scope, expected in (
        ("backbone", backbone),
        ("all_but_heads", set(source) - HEAD),
        ("all", set(source)),
    ):
        report = initialization.initialize_model(model, directory, scope=scope)
        assert set(report.loaded) == expected, scope
        assert report.missing == []
        _assert_loaded(_values(model), before, source, expected)


def test_other_class_count_skips_the_head_and_says_why(panoptic_run):
    directory, source, _, _ = panoptic_run
    model = _build(num_classes=9)
    before = _values(model)
    report = initialization.initialize_model(model, directory, scope="all")
    reason = "class count 6 in the source, 9 here"
    assert report.skipped == {p: reason for p in HEAD}
    assert report.kept == {p: reason for p in HEAD}
    _assert_loaded(_values(model), before, source, set(source) - HEAD)
    text = initialization.format_report(report)
    assert f"skipped, in the source ({reason}): 2" in text
    assert "    semantic_head/final_conv/kernel" in text


def test_unmatched_weight_is_an_error_unless_the_scope_excludes_it(panoptic_run):
    directory, _, backbone, _ = panoptic_run
    model = _build(regime="fast")  # separable decoders and heads: other variables
    with pytest.raises(
        ValueError,
        match=r"source weight\(s\) in scope 'all' match no variable of the model, e\.g\. "
        r"\['semantic_decoder/.*semantic_decoder: regular convolutions in the source, "
        r"depthwise-separable here",
    ):
        initialization.initialize_model(model, directory, scope="all")
    report = initialization.initialize_model(model, directory, scope="backbone")
    assert set(report.loaded) == backbone


def test_shape_mismatch_names_the_variable_and_both_shapes(panoptic_run):
    directory, _, _, _ = panoptic_run
    # w2 = 0.35: stage 2 has 4 * round(64 * 0.35) = 88 channels instead of 4 * 16 = 64.
    model = registry.create_backbone("swidernet_0.25_0.35_0.35")
    before = _values(model)
    with pytest.raises(
        ValueError,
        match=r"stage2_block1/conv1_bn_act/batch_norm/beta: \[64\] in the source, \[88\] here"
        r".*stage 2 starts with 64 channels in the source, 88 here \(another width w2\)",
    ):
        initialization.initialize_model(model, directory)
    _assert_loaded(_values(model), before, before, set())


def test_squeeze_excite_difference_is_explained_from_the_run_config(straight_run):
    model = _build(squeeze_excite=False)
    with pytest.raises(
        ValueError,
        match=r"'stage2_block1/squeeze_excite/conv/bias'.*squeeze_excite=True in the source "
        r"\(.*operative_config\.gin\), False here",
    ):
        initialization.initialize_model(model, straight_run)


@pytest.fixture(scope="module")
def deeplab2_imported(tmp_path_factory):
    """The deeplab2 fixture imported twice: whole model and backbone only."""
    whole = tmp_path_factory.mktemp("deeplab2_model")
    import_deeplab2.import_checkpoint(
        checkpoint=str(DEEPLAB2 / "ckpt"), config=str(DEEPLAB2 / "config.textproto"), output=whole
    )
    backbone = tmp_path_factory.mktemp("deeplab2_backbone")
    import_deeplab2.import_checkpoint(
        checkpoint=str(DEEPLAB2 / "ckpt"),
        backbone="swidernet_0.25_0.125_0.35",
        backbone_only=True,
        output=backbone,
    )
    return whole, backbone


def _relative_error(actual, reference):
    return np.abs(np.asarray(actual) - reference).max() / np.abs(reference).max()


def test_imported_deeplab2_model_reproduces_deeplab2(deeplab2_imported):
    whole, _ = deeplab2_imported
    model = import_deeplab2.build_from_config(str(DEEPLAB2 / "config.textproto"))
    report = initialization.initialize_model(model, str(whole / "model.weights.h5"), scope="all")
    assert report.kind == "weights file" and report.missing == [] and report.skipped == {}
    assert (
        len(report.loaded) == json.loads((DEEPLAB2 / "meta.json").read_text())["n_model_variables"]
    )
    image = np.asarray(Image.open(DEEPLAB2 / "input.png"))[None]
    reference = np.load(DEEPLAB2 / "semantic_logits.npy")
    logits = np.asarray(model(image, training=False)[common.SEMANTIC_LOGITS])
    assert _relative_error(logits.reshape(reference.shape), reference) < 1e-4


def test_imported_deeplab2_backbone_reproduces_deeplab2(deeplab2_imported):
    _, backbone = deeplab2_imported
    paper = registry.create_backbone("swidernet_0.25_0.125_0.35")
    with pytest.raises(
        ValueError,
        match=r"'stage1_block1/squeeze_excite/conv/bias'.*layout='deeplab2' in the source "
        r"\(.*backbone_config\.json\), 'paper' here.*squeeze-and-excitation in stages "
        r"\[1, 2, 3, 4, 5\] of the source, \[2, 3, 4, 5\] here",
    ):
        initialization.initialize_model(paper, str(backbone))
    model = panoptic_deeplab.build_panoptic_deeplab(
        "swidernet_0.25_0.125_0.35", 3, backbone_options={"layout": "deeplab2"}, **NARROW
    )
    report = initialization.initialize_model(model, str(backbone))
    assert report.notes == [] and report.missing == []
    image = np.asarray(Image.open(DEEPLAB2 / "input.png"))[None]
    reference = np.load(DEEPLAB2 / "backbone_res5.npy")
    assert _relative_error(model.backbone(image, training=False)["res5"], reference) < 1e-4


def test_layout_from_the_config_fails_strict_and_is_noted(tmp_path):
    # No SE: both layouts have the same variables, only the config tells them apart.
    source = registry.create_backbone(BACKBONE, layout="deeplab2", squeeze_excite=False)
    values = _randomize(source, seed=3)
    source.save_weights(tmp_path / "backbone.weights.h5")
    config = json.dumps(keras.saving.serialize_keras_object(source))
    (tmp_path / "backbone_config.json").write_text(config)
    model = registry.create_backbone(BACKBONE, squeeze_excite=False)
    before = _values(model)
    with pytest.raises(ValueError, match=r"in the 'deeplab2' layout .*ours in 'paper'"):
        initialization.initialize_model(model, str(tmp_path))
    report = initialization.initialize_model(model, str(tmp_path), strict=False)
    assert report.notes[0].startswith("layout='deeplab2' in the source")
    _assert_loaded(_values(model), before, values, set(values))


def test_weights_file_without_config_loads_into_a_copy_of_our_model(panoptic_run):
    _, source, _, weights_file = panoptic_run
    model = _build()
    before = _values(model)
    report = initialization.initialize_model(model, weights_file, scope="all")
    assert report.missing == [] and report.skipped == {}
    _assert_loaded(_values(model), before, source, set(source))


def test_bad_sources_and_scopes_are_named(tmp_path):
    model = _build()
    with pytest.raises(FileNotFoundError, match="nothing.weights.h5: no such weights file"):
        initialization.initialize_model(model, str(tmp_path / "nothing.weights.h5"))
    with pytest.raises(FileNotFoundError, match="no complete training checkpoint"):
        initialization.initialize_model(model, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"ckpt-7: no checkpoint here"):
        initialization.initialize_model(model, str(tmp_path / "ckpt-7"))
    with pytest.raises(ValueError, match="a deeplab2 checkpoint; import it first"):
        initialization.initialize_model(model, str(DEEPLAB2 / "ckpt" / "ckpt-1000"))
    with pytest.raises(ValueError, match=r"train.init_scope must be one of .*got 'heads'"):
        initialization.initialize_model(model, str(tmp_path), scope="heads")


def test_backbone_settings_are_read_from_a_run_config():
    panoptic = """
        BACKBONE = 'swidernet_1_1_4.5'
        build_panoptic_deeplab.backbone = %BACKBONE
        build_panoptic_deeplab.backbone_options = {'layout': 'deeplab2', 'sac': True}
        train.model_fn = @build_panoptic_deeplab
    """
    assert init_explain.backbone_config_from_gin(panoptic) == {
        "w1": 1,
        "w2": 1,
        "l": 4.5,
        "layout": "deeplab2",
        "squeeze_excite": True,  # SWideRNet's default
        "sac": True,
    }
    imagenet = """
        create_backbone.name = 'wide_resnet41'
        create_backbone.layout = 'paper'
        other.layout = 'deeplab2'
    """
    # WR-41 has neither SE nor SAC; two layouts are bound, so it cannot tell which.
    assert init_explain.backbone_config_from_gin(imagenet) == {
        "w1": 1,
        "w2": 1,
        "l": 1,
        "squeeze_excite": False,
        "sac": False,
    }
    assert init_explain.backbone_config_from_gin("train.num_steps = 3") is None
    assert init_explain.backbone_config_from_gin("this is { not gin") is None
