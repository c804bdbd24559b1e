"""The compiled loop: per-step losses, the non-finite check, accumulation, XLA."""

import os
import types

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.meta_arch import panoptic_deeplab
from swiderrnet_tf.training import checkpointing
from swiderrnet_tf.training import distribution
from swiderrnet_tf.training import errors
from swiderrnet_tf.training import eval_common
from swiderrnet_tf.training import gin_config
from swiderrnet_tf.training import train_loop
from swiderrnet_tf.training import trainer
from tests.training import helpers

KEYS = ("total", "half")
# The tiny model's settings in tiny.gin.
_MODEL_BINDINGS = (
    "backbone",
    "regime",
    "aspp_channels",
    "semantic_decoder_channels",
    "semantic_low_level_channels",
    "semantic_head_channels",
    "instance_decoder_channels",
    "instance_low_level_channels",
    "center_head_channels",
    "offset_head_channels",
    "aspp_dropout",
)


@pytest.fixture(autouse=True)
def clear_gin():
    yield
    gin.clear_config()


def _linear_setup(kernel_value=None, learning_rate=0.1, optimizer=None):
    """A batch-norm-free model whose loss is a mean over images."""
    model = keras.Sequential(
        [keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    if kernel_value is not None:
        model.layers[-1].kernel.assign(np.full((4, 1), kernel_value, np.float32))
    optimizer = optimizer or keras.optimizers.SGD(learning_rate)
    optimizer.build(model.trainable_variables)

    def loss_fn(features, outputs):
        per_image = tf.square(outputs[:, 0] - features["target"])  # [b]
        total = tf.reduce_mean(per_image)
        return {"total": total, "half": total / 2}

    return model, optimizer, loss_fn


def _batches(count):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(count, 4, 2, 2, 1)).astype(np.float32)
    targets = rng.normal(size=(count, 4)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices({common.IMAGE: images, "target": targets})
    return images, targets, iter(dataset)


def _loop(model, optimizer, loss_fn, **kwargs):
    step = tf.Variable(0, dtype=tf.int64)
    settings = dict(steps_per_loop=4, accumulation_steps=1, jit_compile=False) | kwargs
    loop = train_loop.TrainLoop(
        strategy=tf.distribute.get_strategy(),
        model=model,
        optimizer=optimizer,
        loss_fn=loss_fn,
        loss_keys=KEYS,
        step=step,
        **settings,
    )
    return loop, step


def test_loop_returns_the_losses_of_each_step_computed_by_hand():
    model, optimizer, loss_fn = _linear_setup()
    images, targets, iterator = _batches(3)
    kernel, bias = (v.numpy().copy() for v in model.trainable_variables)
    loop, step = _loop(model, optimizer, loss_fn)
    result = loop(iterator, 3)
    assert int(step.numpy()) == 3
    assert result.losses.shape == (3, 2) and result.first_nonfinite_step is None
    assert result.finite.all() and len(result.finite) == len(loop.checked_variables)
    # Plain SGD on the mean squared error, step by step in numpy.
    for index in range(3):
        x = images[index].reshape(4, 4)
        error = x @ kernel[:, 0] + bias[0] - targets[index]
        expected = np.mean(error**2)
        np.testing.assert_allclose(result.losses[index], [expected, expected / 2], rtol=1e-5)
        kernel -= 0.1 * (2 * x.T @ error / 4)[:, None]
        bias -= 0.1 * np.array([2 * error.mean()])
    np.testing.assert_allclose(model.trainable_variables[0].numpy(), kernel, rtol=1e-5)


def test_accumulating_micro_batches_applies_the_gradient_of_the_whole_batch():
    runs = []
    for accumulation in (1, 2, 4):
        keras.utils.set_random_seed(1)
        model, optimizer, loss_fn = _linear_setup()
        _, _, iterator = _batches(2)
        loop, _ = _loop(model, optimizer, loss_fn, accumulation_steps=accumulation)
        result = loop(iterator, 2)
        runs.append((result.losses, [v.numpy() for v in model.trainable_variables]))
    # The loss is a mean over images, so the mean of the micro-batch means is
    # the batch mean, and so are the gradients: only summation order differs.
    for losses, weights in runs[1:]:
        np.testing.assert_allclose(losses, runs[0][0], rtol=1e-5)
        for got, want in zip(weights, runs[0][1], strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_an_update_that_overflows_is_flagged_though_the_loss_is_finite():
    # Kernel 1e36, the loss ten times the mean output (about 1e37, finite),
    # its gradient ten times the mean input (several units), SGD at 3.4e38:
    # the updated kernel passes float32's largest value, 3.4e38.
    model, optimizer, _ = _linear_setup(1e36, learning_rate=3.4e38)

    def loss_fn(features, outputs):
        total = 10.0 * tf.reduce_mean(outputs)
        return {"total": total, "half": total / 2}

    _, _, iterator = _batches(1)
    loop, _ = _loop(model, optimizer, loss_fn)
    result = loop(iterator, 1)
    names = [v.path for v in loop.checked_variables]
    bad = [names[i] for i in np.flatnonzero(~result.finite)]
    # The loss is computed before the update.
    assert np.isfinite(result.losses).all() and result.first_nonfinite_step is None
    assert model.layers[-1].kernel.path in bad, bad


def test_jit_compile_is_refused_on_several_cpu_replicas_and_forced_on_tpu():
    two_cpus = types.SimpleNamespace(num_replicas_in_sync=2)
    with pytest.raises(ValueError, match="train.jit_compile.*2 replicas"):
        trainer.resolve_jit_compile(True, two_cpus)
    assert trainer.resolve_jit_compile(None, two_cpus) is False
    assert trainer.resolve_jit_compile(True, tf.distribute.get_strategy()) is True


def _train(tiny_data, model_dir, *bindings):
    gin_config.parse([helpers.TINY_GIN], [f"DATA_DIR = '{tiny_data}'", *bindings])
    return trainer.train(strategy=tf.distribute.get_strategy(), model_dir=str(model_dir))


def test_jit_compiled_steps_on_one_cpu_match_the_steps_without(tiny_data, straight_run, tmp_path):
    _train(tiny_data, tmp_path, *helpers.COMPARABLE, "train.jit_compile = True")
    compiled = helpers.checkpoint_values(str(tmp_path / "ckpt-6"))
    plain = helpers.checkpoint_values(os.path.join(straight_run, "ckpt-6"))
    assert sorted(compiled) == sorted(plain)
    # XLA fuses and reorders float sums (and batch norm's moments); over six
    # steps the weights stay within 0.1% of each tensor's largest magnitude
    # (observed: below 1e-5). A wrong gradient or a skipped update is far off.
    for key, value in plain.items():
        value = np.asarray(value, np.float64)
        if value.dtype.kind != "f" or not value.size:
            assert np.array_equal(compiled[key], value), key
            continue
        error = np.max(np.abs(np.asarray(compiled[key], np.float64) - value))
        assert error <= 1e-3 * np.max(np.abs(value)) + 1e-9, (key, error)


def test_overflowing_updates_never_reach_a_checkpoint(tiny_data, tmp_path):
    bindings = (
        "train.learning_rate = 3e38",
        "train.num_steps = 30",
        "train.steps_per_loop = 1",
        "train.log_every_n_steps = 1",
        "train.checkpoint_every_n_steps = 1",
        "train.max_checkpoints_to_keep = 30",
    )
    with pytest.raises(errors.NonFiniteError) as error:
        _train(tiny_data, tmp_path, *bindings)
    saved = checkpointing.complete_checkpoints(str(tmp_path))
    assert error.value.last_checkpoint == (saved[0] if saved else None)
    assert error.value.step == (checkpointing.checkpoint_step(saved[0]) if saved else 0) + 1
    for path in saved:
        for key, value in helpers.checkpoint_values(path).items():
            if np.asarray(value).dtype.kind == "f":
                assert np.isfinite(value).all(), (path, key)


@pytest.mark.parametrize(
    "binding, named",
    [
        ("train.crop_size = (8, 8)", "train.crop_size (8, 8): each side must be at least 17"),
        ("train.learning_rate = 1e39", "train.learning_rate must be a positive float32"),
        ("train.accumulation_steps = 3", "train.accumulation_steps 3 does not divide"),
    ],
)
def test_settings_the_run_cannot_use_are_named_before_any_file_is_written(
    tiny_data, tmp_path, binding, named
):
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        _train(tiny_data, tmp_path, binding)
    assert not os.listdir(tmp_path)


def test_crops_off_the_stride_grid_get_a_note(tiny_data, tmp_path, caplog):
    caplog.set_level("WARNING")
    _train(tiny_data, tmp_path, "train.crop_size = (32, 33)", "train.num_steps = 1")
    assert any("not of the form k * 16 + 1" in r.getMessage() for r in caplog.records)


def test_a_checkpoint_of_another_model_is_explained_and_config_gin_kept(
    tiny_data, straight_run, tmp_path
):
    model_dir = tmp_path / "run"
    tf.io.gfile.makedirs(str(model_dir))
    for name in tf.io.gfile.listdir(straight_run):
        if not tf.io.gfile.isdir(os.path.join(straight_run, name)):
            tf.io.gfile.copy(os.path.join(straight_run, name), str(model_dir / name))
    before = {name: (model_dir / name).read_bytes() for name in os.listdir(model_dir)}
    with pytest.raises(ValueError) as error:
        _train(tiny_data, model_dir, "build_panoptic_deeplab.aspp_channels = 16")
    message = str(error.value)
    assert str(model_dir / "ckpt-6") in message
    assert "aspp/aspp_conv1/batch_norm/moving_mean:0 is (8,) there, (16,) here" in message
    assert "build_panoptic_deeplab.aspp_channels = 8 there, 16 now" in message
    assert {name: (model_dir / name).read_bytes() for name in os.listdir(model_dir)} == before


def test_restoring_another_model_for_export_or_evaluation_is_explained(straight_run, tmp_path):
    gin_config.parse(
        [helpers.TINY_GIN], ["DATA_DIR = 'x'", "build_panoptic_deeplab.aspp_channels = 4"]
    )
    info = dataset_info.get_dataset_info("synthetic")  # the dataset of tiny.gin
    model = panoptic_deeplab.build_panoptic_deeplab(
        **{k: gin.query_parameter(f"build_panoptic_deeplab.{k}") for k in _MODEL_BINDINGS},
        num_classes=info.num_classes,
    )
    with pytest.raises(ValueError) as error:
        eval_common.restore_model(model, os.path.join(straight_run, "ckpt-6"))
    message = str(error.value)
    assert "ckpt-6 does not match" in message and "is (8,) there, (4,) here" in message
    assert "build_panoptic_deeplab.aspp_channels = 8 there, 4 now" in message


def test_tpu_topology_line_counts_hosts_and_cores():
    # A slice of 2 hosts with 4 cores each on a 2x2x1x2 mesh (as a v3-8 is
    # one host with 8 cores): coordinates made by hand, no TPU needed.
    coordinates = [[[x, y, 0, core] for x in range(2) for core in range(2)] for y in range(2)]
    topology = tf.tpu.experimental.Topology(
        mesh_shape=[2, 2, 1, 2], device_coordinates=np.array(coordinates, np.int32)
    )
    line = distribution.describe_tpu_topology(topology, 8)
    assert line == "TPU topology: 2 host(s) x 4 cores = 8 TPU cores (mesh 2x2x1x2), 8 replica(s)"
