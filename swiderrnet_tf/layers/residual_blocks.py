"""Wide residual blocks of SWideRNet (paper Table 1; deeplab2's AxialBlock).

Both blocks are pre-activation in the deeplab2 sense: ReLU on the block input,
the shortcut taken from that activated input (a 1x1 convolution + BN when the
channel count changes, otherwise the identity, subsampled when the block is
strided), the branch convolutions with BN, the last BN with gamma initialised
to zero (the block starts as an identity, Goyal et al. 2017), then
squeeze-and-excitation, then drop path, then the addition. No ReLU after the
addition: the next block applies it.

With `recompute=True` a block keeps only its input for the backward pass and
recomputes everything else there (`layers.recompute`), as deeplab2's
`conv_use_recompute_grad`. Its drop-path seed is drawn before the recomputed
function, so that the recomputation draws the same masks.

Deviations from the paper:
  1. Where a block both strides and changes channels the projection shortcut
     strides too; the paper's strided identity shortcuts add no parameters, as
     its counts require (DESIGN 1.3).
"""

import keras
from keras import ops

from swiderrnet_tf.layers import conv_bn
from swiderrnet_tf.layers import drop_path
from swiderrnet_tf.layers import recompute
from swiderrnet_tf.layers import squeeze_excite as squeeze_excite_lib


class _WideResidualBlock(keras.layers.Layer):
    """Shared shortcut / SE / drop path / addition logic of the two blocks."""

    def __init__(
        self,
        filters,
        strides: int = 1,
        atrous_rate: int = 1,
        squeeze_excite: bool = False,
        se_gate_scale: float = squeeze_excite_lib.PAPER_GATE_SCALE,
        drop_path_keep_prob: float = 1.0,
        sync_batch_norm: bool = False,
        recompute: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        self.strides = strides
        self.atrous_rate = atrous_rate
        self.squeeze_excite = squeeze_excite
        self.se_gate_scale = se_gate_scale
        self.drop_path_keep_prob = drop_path_keep_prob
        self.sync_batch_norm = sync_batch_norm
        self.recompute = recompute
        self.shortcut = None
        if squeeze_excite:
            self.squeeze_and_excite = squeeze_excite_lib.SqueezeExcite(
                se_gate_scale, name="squeeze_excite", dtype=self.dtype_policy
            )
        self.drop_path = drop_path.DropPath(
            drop_path_keep_prob, name="drop_path", dtype=self.dtype_policy
        )

    def _conv(self, filters, kernel_size, name, **kwargs):
        return conv_bn.ConvBN(
            filters,
            kernel_size,
            sync_batch_norm=self.sync_batch_norm,
            name=name,
            dtype=self.dtype_policy,
            **kwargs,
        )

    def _branch_layers(self):
        raise NotImplementedError

    def _branch(self, x, training):
        for layer in self._branch_layers():
            x = layer(x, training=training)
        return x

    def build(self, input_shape):
        if input_shape[-1] != self.filters[-1]:
            self.shortcut = self._conv(self.filters[-1], 1, "shortcut", strides=self.strides)
            self.shortcut.build(input_shape)
        shape = tuple(input_shape)
        for layer in self._branch_layers():
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        if self.squeeze_excite:
            self.squeeze_and_excite.build(shape)

    def _forward(self, inputs, training, seed):
        x = ops.relu(inputs)
        if self.shortcut is not None:
            shortcut = self.shortcut(x, training=training)
        elif self.strides > 1:
            shortcut = x[:, :: self.strides, :: self.strides, :]
        else:
            shortcut = x
        y = self._branch(x, training)
        if self.squeeze_excite:
            y = self.squeeze_and_excite(y)
        y = self.drop_path(y, training=training, seed=seed)
        return y + shortcut

    def call(self, inputs, training=None):
        if not (training and self.recompute):
            return self._forward(inputs, training, None)
        # Drawn here, outside the recomputed function: both passes use these masks.
        seed = self.drop_path.draw_seed() if self.drop_path.active else None
        return recompute.call(lambda x: self._forward(x, True, seed), inputs)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._branch_layers():
            shape = layer.compute_output_shape(shape)
        return shape

    def get_config(self):
        return {
            **super().get_config(),
            "filters": list(self.filters),
            "strides": self.strides,
            "atrous_rate": self.atrous_rate,
            "squeeze_excite": self.squeeze_excite,
            "se_gate_scale": self.se_gate_scale,
            "drop_path_keep_prob": self.drop_path_keep_prob,
            "sync_batch_norm": self.sync_batch_norm,
            "recompute": self.recompute,
        }


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class BasicBlock(_WideResidualBlock):
    """Two 3x3 convolutions (stages conv2..conv5 of the paper).

    Input: `[batch, height, width, in_channels]`; output: `[batch, height / strides,
    width / strides, filters[1]]`.

    Args:
      filters: Channels of the two convolutions, `(4b, 4b)`.
      strides: Stride of the block.
      stride_in_second_conv: Stride in the second 3x3 convolution instead of the
        first (the paper layout's last block of a stage).
      atrous_rate: Rate of the first convolution.
      second_atrous_rate: Rate of the second convolution (defaults to
        `atrous_rate`); it differs in the block where a stride is replaced by
        dilation, so that features stay aligned across output strides.
      squeeze_excite: Apply squeeze-and-excitation to the branch.
      se_gate_scale: Slope of the squeeze-and-excitation hard sigmoid.
      drop_path_keep_prob: Survival probability of the branch in training.
      sync_batch_norm: Synchronise BN statistics across replicas.
      recompute: Recompute the block's activations in the backward pass.
    """

    def __init__(
        self,
        filters,
        second_atrous_rate: int | None = None,
        stride_in_second_conv: bool = False,
        **kwargs,
    ):
        super().__init__(filters, **kwargs)
        if len(self.filters) != 2:
            raise ValueError(f"{self.name}: a basic block takes 2 filter sizes, got {filters}")
        self.second_atrous_rate = second_atrous_rate or self.atrous_rate
        self.stride_in_second_conv = stride_in_second_conv
        self.conv1_bn_act = self._conv(
            self.filters[0],
            3,
            "conv1_bn_act",
            strides=1 if stride_in_second_conv else self.strides,
            atrous_rate=self.atrous_rate,
            activation="relu",
        )
        self.conv2_bn = self._conv(
            self.filters[1],
            3,
            "conv2_bn",
            strides=self.strides if stride_in_second_conv else 1,
            atrous_rate=self.second_atrous_rate,
            bn_gamma_initializer="zeros",
        )

    def _branch_layers(self):
        return (self.conv1_bn_act, self.conv2_bn)

    def get_config(self):
        return {
            **super().get_config(),
            "second_atrous_rate": self.second_atrous_rate,
            "stride_in_second_conv": self.stride_in_second_conv,
        }


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class BottleneckBlock(_WideResidualBlock):
    """1x1, 3x3 (optionally switchable atrous), 1x1 convolutions (conv6).

    Input: `[batch, height, width, in_channels]`; output: `[batch, height / strides,
    width / strides, filters[2]]`.

    Args:
      filters: Channels of the three convolutions, `(b, 2b, 4b)`.
      strides: Stride of the 3x3 convolution.
      atrous_rate: Rate of the 3x3 convolution (the small SAC rate).
      switchable_atrous: Use SAC with global context for the 3x3 convolution
        (global context also when it is strided; SAC itself only at stride 1).
      squeeze_excite: Apply squeeze-and-excitation to the branch.
      se_gate_scale: Slope of the squeeze-and-excitation hard sigmoid.
      drop_path_keep_prob: Survival probability of the branch in training.
      sync_batch_norm: Synchronise BN statistics across replicas.
      recompute: Recompute the block's activations in the backward pass.
    """

    def __init__(self, filters, switchable_atrous: bool = False, **kwargs):
        super().__init__(filters, **kwargs)
        if len(self.filters) != 3:
            raise ValueError(f"{self.name}: a bottleneck block takes 3 filter sizes, got {filters}")
        self.switchable_atrous = switchable_atrous
        self.conv1_bn_act = self._conv(self.filters[0], 1, "conv1_bn_act", activation="relu")
        self.conv2_bn_act = self._conv(
            self.filters[1],
            3,
            "conv2_bn_act",
            strides=self.strides,
            atrous_rate=self.atrous_rate,
            activation="relu",
            switchable_atrous=switchable_atrous,
            global_context=switchable_atrous,
        )
        self.conv3_bn = self._conv(self.filters[2], 1, "conv3_bn", bn_gamma_initializer="zeros")

    def _branch_layers(self):
        return (self.conv1_bn_act, self.conv2_bn_act, self.conv3_bn)

    def get_config(self):
        return {**super().get_config(), "switchable_atrous": self.switchable_atrous}
