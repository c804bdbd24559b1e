"""The classification loss against values worked out by hand."""

import keras
import numpy as np
import pytest

from swiderrnet_tf import common
from swiderrnet_tf.losses import classification_losses


def _losses(loss, logits, labels):
    values = loss(
        {common.LABEL: np.array(labels)}, {common.CLASSIFICATION_LOGITS: np.array(logits)}
    )
    return {k: float(keras.ops.convert_to_numpy(v)) for k, v in values.items()}


def test_smoothed_cross_entropy_and_top_1_by_hand():
    loss = classification_losses.ClassificationLoss(num_classes=2, label_smoothing=0.2)
    # Logits (0, ln 3): p = (1/4, 3/4). Image 1 has label 1, image 2 label 0.
    # Smoothed targets put 0.9 on the label and 0.1 on the other class.
    logits = [[0.0, np.log(3.0)], [0.0, np.log(3.0)]]
    values = _losses(loss, logits, [1, 0])
    first = -(0.9 * np.log(0.75) + 0.1 * np.log(0.25))
    second = -(0.9 * np.log(0.25) + 0.1 * np.log(0.75))
    assert values["cross_entropy_loss"] == pytest.approx((first + second) / 2, rel=1e-5)
    assert values[classification_losses.TOP_1_ACCURACY] == 0.5
    assert values["weight_decay_loss"] == 0.0
    assert values[common.TOTAL_LOSS] == pytest.approx(values["cross_entropy_loss"])


def test_weight_decay_covers_kernels_only():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization()]
    )
    model.layers[0].kernel.assign(np.full((3, 2), 2.0, np.float32))
    model.layers[0].bias.assign(np.full((2,), 5.0, np.float32))
    decayed = classification_losses.decayed_kernels(model)
    assert [v.path for v in decayed] == [model.layers[0].kernel.path]
    loss = classification_losses.ClassificationLoss(
        num_classes=2, decayed_variables=decayed, label_smoothing=0.0, weight_decay=0.01
    )
    values = _losses(loss, [[0.0, 0.0]], [0])
    # 0.01 * (6 * 2^2) / 2; cross-entropy of uniform logits over 2 classes: ln 2.
    assert values["weight_decay_loss"] == pytest.approx(0.12, rel=1e-6)
    assert values[common.TOTAL_LOSS] == pytest.approx(np.log(2.0) + 0.12, rel=1e-6)
