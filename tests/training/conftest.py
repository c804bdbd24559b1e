"""Fixtures shared by the training tests: tiny data and one reference run."""

import gin
import pytest
import tensorflow as tf

from swiderrnet_tf import gin_config
from swiderrnet_tf.training import trainer
from tests.training import helpers


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Folder of the tiny synthetic dataset (the one tiny.gin generates)."""
    return helpers.make_tiny_data(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def straight_run(tiny_data, tmp_path_factory):
    """Six uninterrupted one-device steps of the comparable setup; ckpt-3, ckpt-6."""
    model_dir = str(tmp_path_factory.mktemp("straight"))
    gin_config.parse([helpers.TINY_GIN], [f"DATA_DIR = '{tiny_data}'", *helpers.COMPARABLE])
    try:
        trainer.train(strategy=tf.distribute.get_strategy(), model_dir=model_dir)
    finally:
        gin.clear_config()
    return model_dir
