"""Tests for the poly learning-rate schedule with linear warmup, against hand values."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from swiderrnet_tf.training import schedules

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASE = 1e-3
# Hand values for base 1e-3, 100 steps, power 0.9, 10 warmup steps: linear from
# 0 during the warmup, then 1e-3 * (1 - step / 100) ** 0.9 of the absolute step.
HAND_VALUES = {
    0: 0.0,
    5: BASE * 5 / 10,
    9: BASE * 9 / 10,
    10: BASE * 0.9**0.9,  # warmup end: 9.0953e-4, below the base rate
    55: BASE * 0.45**0.9,  # mid decay: 4.8739e-4
    99: BASE * 0.01**0.9,
    100: 0.0,
    150: 0.0,  # past the end: stays at the end rate
}


def _schedule(**overrides):
    kwargs = dict(initial_learning_rate=BASE, decay_steps=100, warmup_steps=10)
    kwargs.update(overrides)
    return schedules.PolynomialDecayWithWarmup(**kwargs)


def _value(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


@pytest.mark.parametrize("step", sorted(HAND_VALUES))
def test_warmup_then_poly_decay(step):
    np.testing.assert_allclose(_value(_schedule(), step), HAND_VALUES[step], rtol=1e-5, atol=1e-12)


def test_without_warmup_and_with_an_end_rate():
    schedule = _schedule(warmup_steps=0)
    np.testing.assert_allclose(_value(schedule, 0), BASE, rtol=1e-6)
    np.testing.assert_allclose(_value(schedule, 50), BASE * 0.5**0.9, rtol=1e-5)
    schedule = _schedule(warmup_steps=0, end_learning_rate=1e-4, power=1.0)
    # Linear from 1e-3 to 1e-4: a quarter of the way is 1e-3 - 0.25 * 9e-4.
    np.testing.assert_allclose(_value(schedule, 25), 7.75e-4, rtol=1e-5)
    np.testing.assert_allclose(_value(schedule, 100), 1e-4, rtol=1e-6)


def test_config_round_trip():
    schedule = _schedule(power=0.8, end_learning_rate=1e-5)
    config = keras.optimizers.schedules.serialize(schedule)
    restored = keras.optimizers.schedules.deserialize(json.loads(json.dumps(config)))
    assert isinstance(restored, schedules.PolynomialDecayWithWarmup)
    assert restored.get_config() == schedule.get_config()
    for step in (0, 7, 10, 60, 100):
        assert _value(restored, step) == _value(schedule, step)


def test_drives_adam_and_survives_optimizer_serialisation():
    optimizer = keras.optimizers.Adam(learning_rate=_schedule())
    variable = keras.Variable(np.ones(3, np.float32))
    np.testing.assert_allclose(float(optimizer.learning_rate), 0.0)  # step 0 of the warmup
    for _ in range(5):
        optimizer.apply_gradients([(keras.ops.ones(3), variable)])
    np.testing.assert_allclose(float(optimizer.learning_rate), HAND_VALUES[5], rtol=1e-6)
    # With a constant gradient Adam's bias-corrected step equals the rate, so
    # steps 0..4 move the variable by 0 + 1e-4 + 2e-4 + 3e-4 + 4e-4 = 1e-3.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), 0.999, atol=2e-7)

    config = keras.optimizers.serialize(optimizer)
    assert config["config"]["learning_rate"]["registered_name"] == (
        "swiderrnet_tf>PolynomialDecayWithWarmup"
    )
    restored = keras.optimizers.deserialize(json.loads(json.dumps(config)))
    assert restored.get_config() == optimizer.get_config()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="decay_steps must be positive, got 0"):
        _schedule(decay_steps=0, warmup_steps=0)
    with pytest.raises(ValueError, match=r"warmup_steps must lie in \[0, decay_steps=100\)"):
        _schedule(warmup_steps=100)
    with pytest.raises(ValueError, match="power must be >= 0"):
        _schedule(power=-1.0)
    with pytest.raises(ValueError, match="learning rates must be >= 0"):
        _schedule(initial_learning_rate=-1.0)


_JAX_SCRIPT = """
import json
import keras
import numpy as np
from swiderrnet_tf.training import schedules
schedule = schedules.PolynomialDecayWithWarmup(1e-3, 100, warmup_steps=10)
values = {step: float(np.asarray(schedule(step))) for step in (0, 5, 10, 55, 100, 150)}
print(json.dumps({"backend": keras.config.backend(), "values": values}))
"""


def test_jax_backend_gives_the_hand_values():
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", _JAX_SCRIPT],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["backend"] == "jax"
    for step, value in output["values"].items():
        np.testing.assert_allclose(value, HAND_VALUES[int(step)], rtol=1e-5, atol=1e-12)


def test_step_schedule_follows_the_tpu_resnet_reference_by_hand():
    # The reference at batch 1024: 1251 steps per epoch, warmup 5 epochs,
    # x0.1 at epochs 30, 60, 80; base rate 0.1 * 1024 / 256 = 0.4.
    schedule = schedules.build_schedule(
        "step",
        learning_rate=0.4,
        num_steps=112590,
        warmup_steps=6255,
        step_boundaries=(37530, 75060, 100080),
        step_factors=(0.1, 0.01, 0.001),
    )
    hand = {0: 0.0, 3000: 0.4 * 3000 / 6255, 6255: 0.4, 37529: 0.4, 37530: 0.04}
    hand |= {75060: 0.004, 100079: 0.004, 100080: 0.0004, 112590: 0.0004}
    for step, expected in hand.items():
        assert _value(schedule, step) == pytest.approx(expected, rel=1e-6, abs=1e-12), step
    assert schedules.StepDecayWithWarmup.from_config(schedule.get_config()).boundaries == [
        37530,
        75060,
        100080,
    ]


def test_cosine_schedule_by_hand():
    schedule = schedules.build_schedule("cosine", learning_rate=1.0, num_steps=100, warmup_steps=10)
    # 0.5 * (1 + cos(pi * t / 100)) of the absolute step after the warmup.
    hand = {
        5: 0.5,
        10: 0.5 * (1 + np.cos(0.1 * np.pi)),
        50: 0.5,
        75: 0.5 * (1 - 0.5**0.5),
        100: 0.0,
    }
    for step, expected in hand.items():
        assert _value(schedule, step) == pytest.approx(expected, rel=1e-5, abs=1e-7), step


@pytest.mark.parametrize(
    "kwargs, named",
    [
        (dict(step_boundaries=(10, 20), step_factors=(0.1,)), "2 step boundaries"),
        (dict(step_boundaries=(20, 10), step_factors=(0.1, 0.01)), "must increase"),
        (dict(kind="linear"), "train.lr_schedule must be one of"),
    ],
)
def test_bad_step_settings_are_named(kwargs, named):
    kind = kwargs.pop("kind", "step")
    with pytest.raises(ValueError, match=named):
        schedules.build_schedule(kind, learning_rate=0.1, num_steps=100, **kwargs)
