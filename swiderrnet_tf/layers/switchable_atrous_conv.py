"""Switchable Atrous Convolution with global context (SWideRNet paper, eq. 2).

`y = S(x) * conv(x, w, 3r) + (1 - S(x)) * conv(x, w, r)`: both branches share one
kernel `w`. The switch `S` is a 5x5 average pool (stride 1, padded positions
left out of the average) followed by a 1x1 convolution to one channel with bias.
Global context modules (global average pool -> 1x1 convolution with bias, added
back to the feature map) sit before and after the switchable convolution
(DetectoRS, Qiao et al.).

Deviations from the paper, all as deeplab2 does them:
  1. The switch has no sigmoid: `S` is the raw 1x1 convolution output, so the
     mix can extrapolate beyond the two branches.
  2. The switch and both global context convolutions are zero-initialised, so at
     initialisation SAC equals a plain convolution with rate `r`.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class GlobalContext(keras.layers.Layer):
    """Adds a 1x1 convolution of the global average to every pixel.

    Input and output: `[batch, height, width, channels]`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = None

    def build(self, input_shape):
        channels = input_shape[-1]
        self.conv = keras.layers.Conv2D(
            channels,
            1,
            use_bias=True,
            kernel_initializer="zeros",
            bias_initializer="zeros",
            name="conv",
            dtype=self.dtype_policy,
        )
        self.conv.build((input_shape[0], 1, 1, channels))

    def call(self, inputs):
        context = self.conv(ops.mean(inputs, axis=(1, 2), keepdims=True))  # [b, 1, 1, c]
        return inputs + context

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class SwitchableAtrousConv2D(keras.layers.Layer):
    """A stride-1 convolution that switches per pixel between rates r and 3r.

    Input: `[batch, height, width, in_channels]`; output: `[batch, height, width,
    filters]`.

    Args:
      filters: Output channels.
      kernel_size: Square kernel size.
      atrous_rate: The small rate `r`; the large one is `large_rate_multiplier * r`.
      large_rate_multiplier: 3 in the paper.
      kernel_initializer: Initializer of the shared kernel.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        atrous_rate: int = 1,
        large_rate_multiplier: int = 3,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.atrous_rate = atrous_rate
        self.large_rate_multiplier = large_rate_multiplier
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel = None
        self.switch = keras.layers.Conv2D(
            1,
            1,
            use_bias=True,
            kernel_initializer="zeros",
            bias_initializer="zeros",
            name="switch",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        in_channels = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, self.kernel_size, in_channels, self.filters),
            initializer=self.kernel_initializer,
        )
        self.switch.build(input_shape)

    def call(self, inputs):
        # Average pooling with 'same' padding excludes the padded positions from
        # the mean under every Keras backend, as TensorFlow's avg_pool does.
        pooled = ops.average_pool(inputs, pool_size=5, strides=1, padding="same")
        switch = self.switch(pooled)  # [b, h, w, 1]
        small = ops.conv(inputs, self.kernel, padding="same", dilation_rate=self.atrous_rate)
        large = ops.conv(
            inputs,
            self.kernel,
            padding="same",
            dilation_rate=self.atrous_rate * self.large_rate_multiplier,
        )
        return switch * large + (1.0 - switch) * small

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "atrous_rate": self.atrous_rate,
            "large_rate_multiplier": self.large_rate_multiplier,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
