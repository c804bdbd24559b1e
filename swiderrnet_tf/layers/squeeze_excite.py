"""Simplified squeeze-and-excitation (SWideRNet paper, eq. 1).

`s = hard_sigmoid(W z)` with `z` the globally average-pooled input and `W` one
fully connected layer (a 1x1 convolution with bias, C -> C, no reduction); the
input is scaled by `s` per channel.

Deviations from the paper:
  1. The gate's slope is a parameter: the paper's hard sigmoid is
     `relu6(x + 3) / 6`, while deeplab2 multiplies by 0.16667. The 2e-6 relative
     difference compounds through a deep network (3.4e-4 of the logits' range
     on the deeplab2 test fixture), so models in the deeplab2 layout use
     deeplab2's constant, `DEEPLAB2_GATE_SCALE`, to reproduce its checkpoints.
"""

import keras
from keras import ops

PAPER_GATE_SCALE = 1.0 / 6.0
DEEPLAB2_GATE_SCALE = 0.16667


def hard_sigmoid(x):
    """MobileNetV3's hard sigmoid, `relu6(x + 3) / 6`.

    Written here because `keras.activations.hard_sigmoid` has had other slopes
    (0.2 * x + 0.5 in tf_keras).
    """
    return ops.relu6(x + 3.0) / 6.0


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class SqueezeExcite(keras.layers.Layer):
    """Channel attention with one 1x1 convolution and a hard sigmoid gate.

    Input and output: `[batch, height, width, channels]`.

    Args:
      gate_scale: Slope of the hard sigmoid, `relu6(x + 3) * gate_scale`.
    """

    def __init__(self, gate_scale: float = PAPER_GATE_SCALE, **kwargs):
        super().__init__(**kwargs)
        self.gate_scale = gate_scale
        self.conv = None

    def build(self, input_shape):
        channels = input_shape[-1]
        # deeplab2 initialises this kernel with VarianceScaling (fan-in, scale 1).
        self.conv = keras.layers.Conv2D(
            channels,
            1,
            use_bias=True,
            kernel_initializer=keras.initializers.VarianceScaling(),
            name="conv",
            dtype=self.dtype_policy,
        )
        self.conv.build((input_shape[0], 1, 1, channels))

    def call(self, inputs):
        pooled = ops.mean(inputs, axis=(1, 2), keepdims=True)  # [b, 1, 1, c]
        if self.gate_scale == PAPER_GATE_SCALE:
            gate = hard_sigmoid(self.conv(pooled))
        else:
            gate = ops.relu6(self.conv(pooled) + 3.0) * self.gate_scale
        return inputs * gate

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "gate_scale": self.gate_scale}
