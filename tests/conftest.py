"""Test configuration: quiet TensorFlow logs and shared fixtures."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TESTDATA = pathlib.Path(__file__).parent / "testdata"


@pytest.fixture
def testdata() -> pathlib.Path:
    """Path of `tests/testdata`."""
    return TESTDATA
