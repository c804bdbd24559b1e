"""Never lose a run: kill -9 and resume, SIGTERM saves first, complete checkpoints only."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf.inference import checkpoints
from tests.training import helpers

STEP = "step/.ATTRIBUTES/VARIABLE_VALUE"
ITERATIONS = "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"


def _start(command, cwd, log_path):
    log = open(log_path, "w")  # noqa: SIM115  (closed when the process is reaped)
    process = subprocess.Popen(
        command, cwd=cwd, env=helpers.subprocess_env(), stdout=log, stderr=subprocess.STDOUT
    )
    process.log = log
    return process


def _wait_for(condition, process, timeout=240):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the run ended before the expected point"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _stop(process):
    if process.poll() is None:
        process.kill()
    process.wait()
    process.log.close()


def _latest_step(model_dir):
    latest = checkpoints.latest_checkpoint(str(model_dir))
    return -1 if latest is None else checkpoints.checkpoint_step(latest)


def test_kill_9_then_the_same_command_resumes_and_finishes(tiny_data, tmp_path):
    model_dir = tmp_path / "run"
    command = helpers.train_command(
        model_dir,
        tiny_data,
        "train.num_steps = 60",
        "train.steps_per_loop = 5",
        "train.log_every_n_steps = 5",
        "train.checkpoint_every_n_steps = 10",
        "train.max_checkpoints_to_keep = 3",
    )
    process = _start(command, tmp_path, tmp_path / "first.log")
    try:
        _wait_for(lambda: _latest_step(model_dir) >= 10, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        _stop(process)
    assert process.returncode == -signal.SIGKILL

    # The newest checkpoint the state file names is complete (older entries may
    # name one whose sweep was cut short; resume skips those); each complete
    # checkpoint holds its step.
    state = tf.train.get_checkpoint_state(str(model_dir))
    assert checkpoints.is_complete(state.model_checkpoint_path)
    resume_from = checkpoints.latest_checkpoint(str(model_dir))
    assert resume_from == state.model_checkpoint_path
    for path in checkpoints.complete_checkpoints(str(model_dir)):
        assert helpers.checkpoint_values(path)[STEP] == checkpoints.checkpoint_step(path)
    killed_at = checkpoints.checkpoint_step(resume_from)
    assert 10 <= killed_at < 60

    second = helpers.run_cli(command, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"Resumed from {resume_from} at step {killed_at}" in second.stderr
    logged = [int(s) for s in re.findall(r"step (\d+)/60 \|", second.stderr)]
    assert logged[0] == killed_at + 5 and logged[-1] == 60
    final = helpers.checkpoint_values(str(model_dir / "ckpt-60"))
    assert final[STEP] == final[ITERATIONS] == 60


def test_sigterm_saves_a_checkpoint_then_exits(tiny_data, tmp_path):
    model_dir = tmp_path / "run"
    command = helpers.train_command(
        model_dir,
        tiny_data,
        "train.num_steps = 100000",
        "train.steps_per_loop = 5",
        "train.log_every_n_steps = 5",
        "train.checkpoint_every_n_steps = 0",
    )
    log_path = tmp_path / "run.log"
    process = _start(command, tmp_path, log_path)
    try:
        _wait_for(lambda: "step 10/100000" in log_path.read_text(), process)
        assert _latest_step(model_dir) == -1  # no periodic checkpoints in this run
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        _stop(process)
    assert process.returncode == 128 + signal.SIGTERM
    saved = checkpoints.latest_checkpoint(str(model_dir))
    step = checkpoints.checkpoint_step(saved)
    assert step >= 10 and step % 5 == 0
    assert f"stopped by SIGTERM at step {step}; saved {saved}" in log_path.read_text()
    values = helpers.checkpoint_values(saved)
    assert values[STEP] == values[ITERATIONS] == step


def test_resume_skips_checkpoints_the_state_file_names_but_that_are_incomplete(tmp_path):
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(step=step)
    manager = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=5)
    for number in (3, 6, 9):
        step.assign(number)
        manager.save(checkpoint_number=number)
    # ckpt-9 loses its data shard (e.g. deleted by hand); ckpt-6 its index.
    for path in tf.io.gfile.glob(str(tmp_path / "ckpt-9.data-*")):
        os.remove(path)
    os.remove(tmp_path / "ckpt-6.index")
    assert checkpoints.complete_checkpoints(str(tmp_path)) == [str(tmp_path / "ckpt-3")]
    assert checkpoints.latest_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt-3")


@pytest.mark.slow
def test_kill_9_during_saves_never_names_an_incomplete_latest_checkpoint(tmp_path):
    """Kills a process that saves a 64 MB checkpoint in a loop, many times."""
    saver = (
        "import sys, tensorflow as tf\n"
        "from swiderrnet_tf.training import checkpointing\n"
        "big = tf.Variable(tf.random.uniform([16, 1024, 1024]))\n"
        "step = tf.Variable(0, dtype=tf.int64)\n"
        "keeper = checkpointing.TrainCheckpoints(model=tf.Module(), optimizer=tf.Module(),\n"
        "    step=step, model_dir=sys.argv[1], max_to_keep=2)\n"
        "keeper.checkpoint.big = big\n"
        "keeper.restore_latest()\n"
        "while True:\n"
        "    step.assign_add(1)\n"
        "    keeper.save()\n"
    )
    rng = np.random.default_rng(0)
    for _ in range(8):
        process = subprocess.Popen(
            [sys.executable, "-c", saver, str(tmp_path)],
            env=helpers.subprocess_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(6 + rng.uniform(0, 3))
        process.kill()
        process.wait()
        state = tf.train.get_checkpoint_state(str(tmp_path))
        assert checkpoints.is_complete(state.model_checkpoint_path)
        assert checkpoints.latest_checkpoint(str(tmp_path)) == state.model_checkpoint_path
