"""Test configuration: quiet TensorFlow logs and shared fixtures."""

import os
import pathlib

import pytest
from absl import logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TESTDATA = pathlib.Path(__file__).parent / "testdata"


@pytest.fixture
def testdata() -> pathlib.Path:
    """Path of `tests/testdata`."""
    return TESTDATA


ABSL_LOGGER_LEVEL = logging.get_absl_logger().level


@pytest.fixture(autouse=True)
def absl_logger_level():
    """Gives each test the absl logger's level of a fresh process.

    Saving a SavedModel changes it as a side effect (TensorFlow's
    AutoTrackable sets the absl verbosity to FATAL and back, leaving an unset
    level at WARNING), also in fixtures of wider scope, which would hide later
    tests' INFO lines from caplog.
    """
    logging.get_absl_logger().setLevel(ABSL_LOGGER_LEVEL)
    yield
    logging.get_absl_logger().setLevel(ABSL_LOGGER_LEVEL)
