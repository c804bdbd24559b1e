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


@pytest.fixture(autouse=True)
def absl_logger_level():
    """Restores the absl logger's level after each test.

    Saving a SavedModel resets it as a side effect (TensorFlow's
    AutoTrackable sets the absl verbosity to FATAL and back, leaving an unset
    level at WARNING), which would hide later tests' INFO lines from caplog.
    """
    logger = logging.get_absl_logger()
    level = logger.level
    yield
    logger.setLevel(level)
