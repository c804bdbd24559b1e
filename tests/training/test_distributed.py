"""Distributed training: MirroredStrategy equals one device; multi-worker workers agree."""

import json
import os
import socket
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf import gin_config
from swiderrnet_tf.training import trainer
from tests.training import distributed_run
from tests.training import helpers

SCRIPT = str(helpers.ROOT / "tests" / "training" / "distributed_run.py")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_mirrored_over_two_devices_matches_one_device(tiny_data, straight_run, tmp_path):
    done = subprocess.run(
        [sys.executable, SCRIPT, "mirrored", str(tmp_path), tiny_data],
        env=helpers.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "over 2 replica(s): 2 per replica" in done.stderr
    one = helpers.checkpoint_values(os.path.join(straight_run, "ckpt-6"))
    two = helpers.checkpoint_values(str(tmp_path / "mirrored" / "ckpt-6"))
    assert sorted(one) == sorted(two)
    # Same global batch of 4 (the same examples): synchronised batch norm over
    # 2 + 2 images sees the statistics of the 4, and the summed per-replica
    # gradients (loss / 2 each) equal the one-device gradient. Only float
    # summation order differs (batch norm moments as E[x^2] - E[x]^2 over two
    # devices, the all-reduce). Tolerance, per tensor: 1% of its largest
    # magnitude (observed at most 0.3%) plus 1e-9 for tensors that are almost
    # zero (second moments of unused gradients, ~1e-15). Adam's moments scale
    # with the gradient, so a wrong loss scaling (2x) or unsynchronised batch
    # norm is far outside; the weights see the gradient directly since the
    # comparable setup uses a large Adam epsilon (see helpers.COMPARABLE).
    for key, value in one.items():
        value = np.asarray(value, np.float64)
        if value.dtype.kind != "f" or not value.size:
            assert np.array_equal(two[key], value), key
            continue
        error = np.max(np.abs(np.asarray(two[key], np.float64) - value))
        scale = np.max(np.abs(value))
        assert error <= 1e-2 * scale + 1e-9, (key, error, scale)


# About a minute on 2 cores (two runs). The fast tests cover the pieces: replica-
# averaged moving statistics (test_per_replica) and accumulation (test_train_loop).
@pytest.mark.slow
def test_unsynchronised_replicas_match_one_device_accumulating_their_batches(tiny_data, tmp_path):
    done = subprocess.run(
        [sys.executable, SCRIPT, "mirrored_unsync", str(tmp_path), tiny_data],
        env=helpers.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    one_dir = str(tmp_path / "accumulated")
    gin_config.parse(
        [helpers.TINY_GIN],
        [
            f"DATA_DIR = '{tiny_data}'",
            *helpers.COMPARABLE,
            *distributed_run.SHORT,
            "train.accumulation_steps = 2",
        ],
    )
    try:
        trainer.train(strategy=tf.distribute.get_strategy(), model_dir=one_dir)
    finally:
        gin.clear_config()
    one = helpers.checkpoint_values(os.path.join(one_dir, "ckpt-3"))
    two = helpers.checkpoint_values(str(tmp_path / "mirrored_unsync" / "ckpt-3"))
    assert sorted(one) == sorted(two)
    # Global batch 4 either way: replica r normalises examples 2r, 2r + 1 with
    # their own moments, as micro-batch r of the one-device step does, and the
    # sum of the replicas' gradients (loss / 2 each) is the mean of the
    # micro-batches' gradients. So weights and Adam slots agree: observed
    # bitwise (the same kernels on the same micro-batches, and halving is
    # exact in binary); 1e-6 of each tensor's largest magnitude allows another
    # summation order. The moving statistics do not agree (by about 50%), and
    # should not: one device updates them twice per step, m <- 0.99 m + 0.01 mu
    # for each micro-batch in turn, while the replicas make one update towards
    # the mean of their moments, 0.99 m + 0.01 (mu_0 + mu_1) / 2.
    moving = [key for key in one if "moving_mean" in key or "moving_variance" in key]
    assert moving
    for key, value in one.items():
        value = np.asarray(value, np.float64)
        if key in moving:
            assert not np.allclose(two[key], value, rtol=1e-7, atol=0), key
        elif value.dtype.kind != "f" or not value.size:
            assert np.array_equal(two[key], value), key
        else:
            error = np.max(np.abs(np.asarray(two[key], np.float64) - value))
            scale = np.max(np.abs(value))
            assert error <= 1e-6 * scale + 1e-12, (key, error, scale)


def test_multi_worker_mirrored_workers_end_with_identical_weights(tiny_data, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(
            subprocess.Popen(
                [sys.executable, SCRIPT, "worker", str(tmp_path), tiny_data],
                env=helpers.subprocess_env(TF_CONFIG=tf_config),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=300)[0])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-3000:]
    assert "Strategy CollectiveAllReduceStrategy with 2 replica(s) in sync" in outputs[0]
    assert "over 2 replica(s): 2 per replica" in outputs[0]
    chief = np.load(tmp_path / "worker_0.npz")
    other = np.load(tmp_path / "worker_1.npz")
    assert sorted(chief.files) == sorted(other.files)
    for key in chief.files:
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)
    # The chief saved the final checkpoint; the other worker's scratch copy is gone.
    run = tmp_path / "multi_worker"
    assert (run / "ckpt-3.index").exists()
    assert not (run / "worker_scratch").exists()
    saved = helpers.checkpoint_values(str(run / "ckpt-3"))
    assert saved["step/.ATTRIBUTES/VARIABLE_VALUE"] == 3
    # Loss scaling: a step whose float16 gradients overflow is skipped (on both
    # workers alike) and halves the scale, which starts at 2 ** 15.
    iterations = saved["optimizer/inner_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]
    scale = saved["optimizer/dynamic_scale/.ATTRIBUTES/VARIABLE_VALUE"]
    assert scale == 2.0**15 / 2 ** (3 - iterations)
