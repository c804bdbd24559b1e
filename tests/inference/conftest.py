"""The tiny exported SavedModel shared by the export and predict tests."""

import pytest

from swiderrnet_tf.inference import export_lib
from tests.inference import helpers

MERGE = dict(center_threshold=0.1, nms_kernel=7, keep_k_centers=16)
CANVAS_SIDES = (40, 64)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """(model, SavedModel directory) of `helpers.tiny_model()`, single scale."""
    model = helpers.tiny_model()
    directory = str(tmp_path_factory.mktemp("export") / "saved_model")
    export_lib.export_saved_model(
        model, helpers.INFO, directory, canvas_sides=CANVAS_SIDES, **MERGE
    )
    return model, directory
