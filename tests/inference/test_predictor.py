"""The public API: README's create / load / predict lines, and each source of a Predictor."""

import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import swiderrnet_tf
from swiderrnet_tf import gin_config
from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.inference import predictor as predictor_lib
from swiderrnet_tf.inference import run_config
from swiderrnet_tf.postprocess import panoptic_merge
from swiderrnet_tf.tools import import_deeplab2
from tests.inference import conftest
from tests.inference import helpers
from tests.inference import test_export

ROOT = helpers.ROOT
COCO_IMAGE = ROOT / "tests/testdata/coco_panoptic_sample/input_images/000000142238.jpg"
FIXTURE = ROOT / "tests/testdata/deeplab2_swidernet_tiny"


def readme_api_lines() -> str:
    """The Python block of README.md's "Use it as a library" section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Use it as a library") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def write_run_folder(run_dir, seed=0):
    """A run folder as the trainer leaves it: config.gin and ckpt-<step>, of demo.gin.

    Returns:
      The model whose weights the checkpoint holds.
    """
    run_config.parse(["gin_configs/demo.gin"])
    model_fn, name = run_config.model_and_dataset()
    model = model_fn(num_classes=dataset_info.get_dataset_info(name).num_classes)
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if weight.path.endswith(("moving_variance", "gamma")):
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), str(run_dir), max_to_keep=1, checkpoint_name="ckpt"
    )
    manager.save(checkpoint_number=7)
    gin_config.write_config(str(run_dir), operative=False)
    return model


def softmax(logits):
    logits = np.asarray(logits, np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def check_segments(prediction, info, instance_scores, probabilities):
    """Areas, classes and scores of `segments`, recounted from the maps."""
    panoptic = prediction.panoptic
    void = panoptic // info.label_divisor >= info.num_classes
    assert sum(s.area for s in prediction.segments) == (~void).sum()
    for segment in prediction.segments:
        mask = panoptic == segment.id
        assert segment.area == mask.sum()
        assert segment.label == segment.id // info.label_divisor
        assert segment.category == info.class_names[segment.label]
        assert segment.is_thing == (segment.label in info.thing_classes)
        if segment.is_thing:
            assert segment.score == pytest.approx(instance_scores[mask].max(), rel=1e-5)
        else:
            assert segment.score == pytest.approx(
                probabilities[mask, segment.label].mean(), rel=1e-4
            )


def test_readme_lines_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = write_run_folder(tmp_path / "runs" / "demo")
    # A corner of a COCO image, small enough for a quick test.
    Image.open(COCO_IMAGE).crop((0, 0, 129, 97)).save(tmp_path / "photo.jpg", quality=95)
    names = {}
    exec(readme_api_lines(), names)  # noqa: S102  (the README's own lines)
    created, prediction = names["model"], names["prediction"]
    # The created model: Cityscapes' 19 classes, the fast regime.
    out = created(np.zeros((1, 33, 33, 3), np.float32), training=False)
    assert out["semantic_logits"].shape == (1, 33, 33, 19)
    # The loaded run: the checkpoint's model, merged with synthetic.gin's settings
    # (dataset synthetic: NMS 7, 32 centers, threshold 0.1, stuff area 64).
    photo = np.asarray(predictor_lib.images_lib.read_image(tmp_path / "photo.jpg"))
    outputs = model(photo[None].astype(np.float32), training=False)
    merged = panoptic_merge.panoptic_merge(
        outputs["semantic_logits"],
        outputs["center_heatmap"],
        outputs["offsets"],
        thing_classes=(3, 4, 5),
        label_divisor=1000,
        stuff_area_limit=64,
        center_threshold=0.1,
        nms_kernel=7,
        keep_k_centers=32,
        void_label=255,
    )
    assert prediction.panoptic.shape == photo.shape[:2]
    np.testing.assert_array_equal(prediction.panoptic, np.asarray(merged["panoptic"])[0])
    np.testing.assert_array_equal(prediction.semantic, np.asarray(merged["semantic"])[0])
    np.testing.assert_array_equal(prediction.instance, np.asarray(merged["instance"])[0])
    check_segments(
        prediction,
        dataset_info.SYNTHETIC,
        np.asarray(merged["instance_scores"])[0],
        softmax(outputs["semantic_logits"])[0],
    )


def test_saved_model_predictor_equals_the_eager_model(exported):
    model, saved_model = exported
    predictor = swiderrnet_tf.Predictor.load(saved_model)
    assert predictor.info.name == "synthetic"
    assert predictor.info.keep_k_centers == conftest.MERGE["keep_k_centers"]
    batch = helpers.random_images((2, 37, 53), seed=6)
    predictions = predictor.predict(batch)
    assert len(predictions) == 2
    for image, prediction in zip(batch, predictions, strict=True):
        outputs = model(image[None], training=False)
        expected = test_export.expected_outputs(outputs)
        np.testing.assert_array_equal(prediction.panoptic, expected["panoptic"][0])
        check_segments(
            prediction,
            helpers.INFO,
            expected["instance_scores"][0],
            softmax(outputs["semantic_logits"])[0],
        )
    with pytest.raises(ValueError, match="not a run folder"):
        swiderrnet_tf.Predictor.load(str(conftest.__file__))


def test_imported_deeplab2_model_reproduces_deeplab2(tmp_path):
    import_deeplab2.import_checkpoint(
        checkpoint=str(FIXTURE / "ckpt" / "ckpt-1000"),
        config=str(FIXTURE / "config.textproto"),
        output=str(tmp_path),
    )
    # The fixture's dataset (dataset_descriptor.json) and post-processing (README).
    info = dataset_info.make_dataset_info(
        name="deeplab2_fixture_5class",
        class_names=["c0", "c1", "c2", "c3", "c4"],
        thing_classes=[1, 2, 3],
        label_divisor=256,
        stuff_area_limit=0,
        eval_scales=[1.0],
        nms_kernel=3,
        keep_k_centers=200,
    )
    with pytest.raises(ValueError, match="give its dataset"):
        swiderrnet_tf.Predictor.load(tmp_path)
    prediction = swiderrnet_tf.Predictor.load(tmp_path, dataset=info).predict(FIXTURE / "input.png")
    reference = np.load(FIXTURE / "panoptic_pred.npy")[0]
    # The network is recomputed: pixels at the README's near-ties may flip.
    assert (prediction.panoptic == reference).mean() > 0.999
    assert (prediction.semantic == np.load(FIXTURE / "semantic_pred.npy")[0]).mean() > 0.999
    with pytest.raises(ValueError, match="predicts 5 classes but dataset 'coco' has 133"):
        swiderrnet_tf.Predictor.load(tmp_path, dataset="coco")


def test_create_and_list_models():
    assert "swidernet_0.25_0.25_0.75" in swiderrnet_tf.list_models("swidernet_0.25_*")
    assert swiderrnet_tf.list_models("wide_*") == ["wide_resnet41"]
    # S_fast (45) and S_strong (21) share (1, 1, 1); plus (1, 1, 4.5) and WR-41.
    assert len(swiderrnet_tf.list_models()) == 45 + 21 - 1 + 2
    with pytest.raises(AttributeError, match="no attribute 'Predictr'"):
        swiderrnet_tf.Predictr  # noqa: B018
