"""Bad data and unwritable folders stop training and evaluation with the file named."""

import json
import os
import shutil

import gin
import pytest
import tensorflow as tf

from swiderrnet_tf import evaluate as evaluate_cli
from swiderrnet_tf import train as train_cli
from swiderrnet_tf.data import validation
from swiderrnet_tf.training import checkpointing
from swiderrnet_tf.training import gin_config
from swiderrnet_tf.training import trainer
from tests.data import test_validation
from tests.training import helpers


@pytest.fixture(autouse=True)
def clear_gin():
    yield
    gin.clear_config()


def _train(data_dir, model_dir, *bindings):
    gin.clear_config()
    gin_config.parse([helpers.TINY_GIN], [f"DATA_DIR = '{data_dir}'", *bindings])
    return trainer.train(strategy=tf.distribute.get_strategy(), model_dir=str(model_dir))


def _drop_a_shard(data, split, count):
    """Writes the manifest a conversion of `count` images into 4 shards writes; removes shard 3.

    As when a copy of the data folder was cut short.
    """
    manifest = {"dataset": "synthetic", "split": split, "num_shards": 4, "num_items": count}
    (data / f"{split}-conversion.json").write_text(json.dumps(manifest))
    (data / f"{split}-00003-of-00004.tfrecord").unlink()


def test_incomplete_data_allowed_warns_and_a_bad_record_mid_run_is_named(
    tiny_data, straight_run, tmp_path, caplog
):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    _drop_a_shard(data, "train", 12)
    # Damaged after the first record of its file: found when the run reads it.
    test_validation.corrupt_record(data / "train-00001-of-00004.tfrecord", 1)
    run = tmp_path / "run"
    shutil.copytree(straight_run, run)
    last = checkpointing.latest_checkpoint(str(run))
    assert last.endswith("ckpt-6")
    with pytest.raises(validation.DataError) as error:
        _train(data, run, "train.num_steps = 9", "train.allow_incomplete_data = True")
    assert "1 of them is missing (train-00003-of-00004.tfrecord)" in caplog.text
    assert str(error.value).startswith(f"{data / 'train-00001-of-00004.tfrecord'}: record 1 ")
    assert "located by a scan" in str(error.value) and f"{last}, is kept" in str(error.value)
    # The run stopped without saving: it resumes from the same checkpoint.
    assert checkpointing.latest_checkpoint(str(run)) == last


def test_evaluation_checks_its_data_before_any_work(tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    _drop_a_shard(data, "val", 4)

    def evaluate():
        status = evaluate_cli.run(
            gin_files=[helpers.TINY_GIN],
            gin_bindings=[f"DATA_DIR = '{data}'"],
            checkpoint=str(tmp_path / "no_run"),
        )
        assert status == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert evaluate().startswith(
        f"error: {data / 'val-conversion.json'} records 4 'val' shards, but 1 of them is missing "
        "(val-00003-of-00004.tfrecord); run the conversion again to finish it, or set "
        "evaluate.allow_incomplete_data = True"
    )
    (data / "val-conversion.json").unlink()
    (data / "val-00002-of-00004.tfrecord").write_bytes(b"not a TFRecord file")
    assert evaluate() == (
        f"error: {data / 'val-00002-of-00004.tfrecord'}: not a TFRecord file, or its first "
        "record is damaged (corrupted record at 0 (Is this even a TFRecord file?))"
    )


def test_folders_that_cannot_be_created_are_named(tiny_data, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    bindings = [f"DATA_DIR = '{tiny_data}'"]
    run_dir = tmp_path / "file" / "run"
    status = train_cli.run(gin_files=[helpers.TINY_GIN], gin_bindings=bindings, model_dir=run_dir)
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {run_dir}: cannot create the run folder: ")
    output_dir = tmp_path / "file" / "eval"
    status = evaluate_cli.run(
        gin_files=[helpers.TINY_GIN],
        gin_bindings=bindings,
        checkpoint=str(tmp_path / "no_run"),
        output_dir=str(output_dir),
    )
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {output_dir}: cannot create the evaluation output folder: ")
    assert not os.path.exists(tmp_path / "no_run")
