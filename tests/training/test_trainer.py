"""The training loop in-process: resume after a NaN, falling loss, summaries, evaluation."""

import json
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf import evaluate as evaluate_cli
from swiderrnet_tf import train as train_cli
from swiderrnet_tf.training import checkpointing
from swiderrnet_tf.training import errors
from swiderrnet_tf.training import gin_config
from swiderrnet_tf.training import trainer
from tests.training import helpers

OPTIMIZER_ITERATIONS = "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"
STEP = "step/.ATTRIBUTES/VARIABLE_VALUE"


@pytest.fixture(autouse=True)
def clear_gin():
    yield
    gin.clear_config()


def _train(tiny_data, model_dir, *bindings):
    gin_config.parse([helpers.TINY_GIN], [f"DATA_DIR = '{tiny_data}'", *bindings])
    return trainer.train(strategy=tf.distribute.get_strategy(), model_dir=str(model_dir))


def test_nan_stops_cleanly_and_resuming_matches_an_uninterrupted_run(
    tiny_data, straight_run, tmp_path
):
    poison = ("train.loss_fn = @loss_with_nan_at_step", "loss_with_nan_at_step.step = 5")
    with pytest.raises(errors.NonFiniteError) as error:
        _train(tiny_data, tmp_path, *helpers.COMPARABLE, *poison)
    last_good = os.path.join(str(tmp_path), "ckpt-3")
    assert error.value.step == 5
    assert error.value.last_checkpoint == last_good
    assert "step 5" in str(error.value) and last_good in str(error.value)
    # Nothing was saved after the poisoned step.
    assert checkpointing.latest_checkpoint(str(tmp_path)) == last_good
    gin.clear_config()

    result = _train(tiny_data, tmp_path, *helpers.COMPARABLE)
    assert result.step == 6
    resumed = helpers.checkpoint_values(os.path.join(str(tmp_path), "ckpt-6"))
    straight = helpers.checkpoint_values(os.path.join(straight_run, "ckpt-6"))
    assert sorted(resumed) == sorted(straight)
    assert resumed[OPTIMIZER_ITERATIONS] == straight[OPTIMIZER_ITERATIONS] == 6
    assert resumed[STEP] == 6
    # Weights, batch norm statistics and Adam's moments: same numbers, same
    # process and inputs, so only float reassociation may differ.
    moments = [k for k in resumed if k.startswith("optimizer/_variables/")]
    assert len(moments) > 100
    for key, value in straight.items():
        np.testing.assert_allclose(resumed[key], value, rtol=1e-5, atol=1e-7, err_msg=key)
    # The learning rate logged at step 3 is the poly value of step 3, by hand:
    # 1e-3 * (1 - 3 / 6) ** 0.9, both before and after the interruption.
    for run in (str(tmp_path), straight_run):
        rates = dict(helpers.scalar_events(os.path.join(run, "train"), "learning_rate"))
        assert rates[3] == pytest.approx(1e-3 * 0.5**0.9, rel=1e-5)


def test_short_demo_run_loss_falls_with_progress_and_summaries(tiny_data, tmp_path, caplog):
    caplog.set_level("INFO")
    gin_config.parse(
        ["gin_configs/demo.gin"],
        [
            f"DATA_DIR = '{tiny_data}'",
            *(f"ensure_dataset.{k} = {v}" for k, v in helpers.TINY_DATA.items()),
            "train.num_steps = 40",
            "train.warmup_steps = 5",
            "train.crop_size = (65, 65)",
            "train.batch_size = 4",
            "train.steps_per_loop = 10",
            "train.log_every_n_steps = 10",
            "train.checkpoint_every_n_steps = 0",
            "train.image_summary_every_n_steps = 40",
        ],
    )
    result = trainer.train(strategy=tf.distribute.get_strategy(), model_dir=str(tmp_path))
    assert result.step == 40
    summaries = os.path.join(str(tmp_path), "train")
    totals = helpers.scalar_events(summaries, "losses/total_loss")
    assert [step for step, _ in totals] == [10, 20, 30, 40]
    assert totals[-1][1] < 0.8 * totals[0][1], totals
    for tag in ("losses/center_loss", "learning_rate", "throughput/images_per_second"):
        assert len(helpers.scalar_events(summaries, tag)) == 4, tag
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(lines) == 4
    for field in ("total", "semantic", "center", "offset", "lr", "steps/s", "img/s", "ETA"):
        assert field in lines[-1], lines[-1]
    # Two images, each image | ground truth | prediction side by side.
    event_files = tf.io.gfile.glob(os.path.join(summaries, "events.out.tfevents.*"))
    shapes = [
        tf.io.decode_png(value.tensor.string_val[2]).shape
        for path in event_files
        for event in tf.compat.v1.train.summary_iterator(path)
        for value in event.summary.value
        if value.tag == "panoptic/image_truth_prediction"
    ]
    assert shapes == [(65, 3 * 65, 3)]


def test_evaluate_cli_prints_and_writes_the_results(tiny_data, straight_run, tmp_path, capsys):
    output_dir = tmp_path / "eval"
    code = evaluate_cli.run(
        gin_files=[helpers.TINY_GIN],
        checkpoint=straight_run,
        gin_bindings=[f"DATA_DIR = '{tiny_data}'"],
        output_dir=str(output_dir),
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "at step 6" in printed and "PQ" in printed and "Things" in printed
    with open(output_dir / "results_step_6.json") as f:
        document = json.load(f)
    assert document["metrics"]["num_images"] == helpers.TINY_DATA["num_val"]
    assert {"pq", "sq", "rq", "miou", "ap"} <= set(document["metrics"])
    assert len(document["per_class"]) == 6


def test_multi_scale_evaluation_from_gin(tiny_data, straight_run, tmp_path, monkeypatch):
    from swiderrnet_tf.inference import multi_scale

    calls = []
    original = multi_scale.multi_scale_outputs

    def recording(predict, images, **kwargs):
        calls.append((tuple(images.shape), kwargs))
        return original(predict, images, **kwargs)

    monkeypatch.setattr(multi_scale, "multi_scale_outputs", recording)
    code = evaluate_cli.run(
        gin_files=[helpers.TINY_GIN],
        checkpoint=straight_run,
        gin_bindings=[
            f"DATA_DIR = '{tiny_data}'",
            "panoptic_predictor.predict_fn_factory = @multi_scale_predict_fn",
            "multi_scale_predict_fn.scales = (0.5, 1.0)",
        ],
        output_dir=str(tmp_path / "eval"),
    )
    assert code == 0
    assert calls and all(kw == {"scales": (0.5, 1.0), "flip": True} for _, kw in calls)
    assert (tmp_path / "eval" / "results_step_6.json").exists()


def test_continuous_eval_evaluates_checkpoints_until_the_final_step(
    tiny_data, straight_run, capsys
):
    code = train_cli.run(
        gin_files=[helpers.TINY_GIN],
        gin_bindings=[f"DATA_DIR = '{tiny_data}'", "evaluate.checkpoint_timeout = 1"],
        model_dir=straight_run,
        mode="continuous_eval",
    )
    assert code == 0
    assert "at step 6" in capsys.readouterr().out
    assert os.path.exists(os.path.join(straight_run, "eval", "results_step_6.json"))
