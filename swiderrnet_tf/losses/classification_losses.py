"""The ImageNet classification loss: softmax cross-entropy and L2 weight decay.

As the TPU ResNet reference (tensorflow/tpu, `models/official/resnet`):
softmax cross-entropy on one-hot labels, optionally smoothed (0.1 in the
reference recipes of the TF Model Garden and in deeplab2's "strong" ImageNet
strategy), plus `weight_decay * sum(||w||^2) / 2` added to the loss.

Deliberate deviations from the reference:
  1. Weight decay applies to convolution and dense kernels only; the
     reference decays every non-batch-norm variable, biases included.
"""

import keras
from keras import ops

from swiderrnet_tf import common

CROSS_ENTROPY_LOSS = "cross_entropy_loss"
WEIGHT_DECAY_LOSS = "weight_decay_loss"
TOP_1_ACCURACY = "top_1_accuracy"
# Order of the values a classification step reports; the first is minimised.
LOSS_KEYS = (common.TOTAL_LOSS, CROSS_ENTROPY_LOSS, WEIGHT_DECAY_LOSS, TOP_1_ACCURACY)
_KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


def decayed_kernels(model: keras.Model) -> list:
    """The trainable convolution and dense kernels of `model` (no biases, no BN)."""
    return [v for v in model.trainable_variables if v.path.rsplit("/", 1)[-1] in _KERNELS]


class ClassificationLoss:
    """`loss(features, outputs)` -> `LOSS_KEYS` dict of scalars.

    Args:
      num_classes: Classes of the logits.
      decayed_variables: Variables whose squared norm is decayed (see
        `decayed_kernels`).
      label_smoothing: Mass moved from the true class to all classes evenly.
      weight_decay: L2 coefficient (the gradient of the penalty is
        `weight_decay * w`).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        decayed_variables=(),
        label_smoothing: float = 0.1,
        weight_decay: float = 1e-4,
    ):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if weight_decay < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.num_classes = num_classes
        self.decayed_variables = list(decayed_variables)
        self.label_smoothing = label_smoothing
        self.weight_decay = weight_decay

    def __call__(self, features: dict, outputs: dict) -> dict:
        """Losses of a batch.

        Args:
          features: Holds `label` `[batch]` int32 class ids.
          outputs: Holds `classification_logits` `[batch, num_classes]`.
        """
        logits = ops.cast(outputs[common.CLASSIFICATION_LOGITS], "float32")
        labels = ops.cast(features[common.LABEL], "int32")
        targets = ops.one_hot(labels, self.num_classes)  # [b, classes]
        if self.label_smoothing:
            targets = (
                targets * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
            )
        log_probabilities = ops.log_softmax(logits, axis=-1)
        cross_entropy = -ops.mean(ops.sum(targets * log_probabilities, axis=-1))
        decay = ops.zeros((), "float32")
        if self.weight_decay and self.decayed_variables:
            squares = [ops.sum(ops.square(ops.cast(v, "float32"))) for v in self.decayed_variables]
            decay = self.weight_decay * 0.5 * ops.sum(ops.stack(squares))
        correct = ops.cast(
            ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), labels), "float32"
        )
        return {
            common.TOTAL_LOSS: cross_entropy + decay,
            CROSS_ENTROPY_LOSS: cross_entropy,
            WEIGHT_DECAY_LOSS: decay,
            TOP_1_ACCURACY: ops.mean(correct),
        }
