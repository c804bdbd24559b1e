"""Convolution + batch norm + activation, regular or depthwise-separable.

Padding follows deeplab2: stride-1 convolutions use 'same' padding; strided
convolutions pad symmetrically by `(k_eff - 1) // 2` (the extra pixel, if any,
at the bottom/right) and then run 'valid', so an input of size `n` gives
`(n - 1) // stride + 1` outputs and output pixel `i` sits on input pixel
`i * stride` for any input size. Keras' 'same' padding would shift it by half a
pixel on even sizes.

`conv_bn_act` is the regular/separable switch that the Panoptic-DeepLab regimes
use (the paper's "Sep-Conv").

In inference, in float32 and in bfloat16 compute alike, batch norm is folded
into the convolution (`kernel * scale`, then a bias), which lets TensorFlow's
graph optimiser fuse convolution, bias and ReLU into one kernel; Keras 3's batch
norm is otherwise two extra passes over every feature map (and, in bfloat16, a
cast to float32 and back around them). The folded kernel is computed from the
float32 weights and rounded to the compute dtype once. Where the global
context module sits between the convolution and its batch norm (stage 5 with
SAC), batch norm runs as one multiply-add in the compute dtype instead. The
result equals conv -> BN to the compute dtype's rounding.
"""

import keras
from keras import ops
from keras.src import backend as keras_backend

from swiderrnet_tf.layers import normalization
from swiderrnet_tf.layers import switchable_atrous_conv

CONV_TYPES = ("standard", "separable")
# Compute dtypes whose inference folds batch norm (tested in both).
FOLDED_DTYPES = ("float32", "bfloat16")


def _symmetric_padding(kernel_size: int, atrous_rate: int) -> tuple[int, int]:
    effective = kernel_size + (kernel_size - 1) * (atrous_rate - 1)
    total = effective - 1
    return total // 2, total - total // 2


def folded_batch_norm(batch_norm: keras.layers.BatchNormalization):
    """Per-channel (scale, bias) with `BN(x) = x * scale + bias` in inference."""
    scale = batch_norm.gamma * ops.rsqrt(batch_norm.moving_variance + batch_norm.epsilon)
    return scale, batch_norm.beta - batch_norm.moving_mean * scale


def float32_value(variable):
    """A float32 variable's unrounded value, also where the layer autocasts its weights.

    Under a mixed policy, reading a kernel inside `call` rounds it to the
    compute dtype; the fold multiplies the float32 kernel by the batch-norm
    scale and rounds the product once. Keras has no public switch for this.
    """
    with keras_backend.AutocastScope(None):
        return ops.convert_to_tensor(variable.value)


def _padded_shape(shape, padding: tuple[int, int]):
    pad = sum(padding)
    height, width = shape[1], shape[2]
    return (
        shape[0],
        None if height is None else height + pad,
        None if width is None else width + pad,
        shape[3],
    )


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class ConvBN(keras.layers.Layer):
    """Conv2D (optionally switchable-atrous with global context) + BN + activation.

    Input: `[batch, height, width, in_channels]`; output: `[batch, height', width',
    filters]` with `height' = (height - 1) // strides + 1`.

    Args:
      filters: Output channels.
      kernel_size: Square kernel size.
      strides: Convolution stride.
      atrous_rate: Dilation rate.
      use_bias: Convolution bias (only without batch norm).
      use_bn: Apply batch normalisation after the convolution.
      activation: `relu` or None.
      bn_gamma_initializer: `zeros` for the last BN of a residual branch.
      kernel_initializer: Convolution kernel initializer.
      switchable_atrous: Use `SwitchableAtrousConv2D` (only where `strides == 1`;
        a strided convolution stays regular, as in deeplab2).
      global_context: Add global context modules before and after the convolution.
      sync_batch_norm: Synchronise BN statistics across replicas.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        strides: int = 1,
        atrous_rate: int = 1,
        use_bias: bool = False,
        use_bn: bool = True,
        activation: str | None = None,
        bn_gamma_initializer: str = "ones",
        kernel_initializer="he_normal",
        switchable_atrous: bool = False,
        global_context: bool = False,
        sync_batch_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if use_bias and use_bn:
            raise ValueError(f"{self.name}: a convolution followed by batch norm needs no bias")
        if activation not in (None, "relu"):
            raise ValueError(f"{self.name}: activation must be 'relu' or None, got {activation!r}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.atrous_rate = atrous_rate
        self.use_bias = use_bias
        self.use_bn = use_bn
        self.activation = activation
        self.bn_gamma_initializer = bn_gamma_initializer
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.switchable_atrous = switchable_atrous
        self.global_context = global_context
        self.sync_batch_norm = sync_batch_norm

        policy = self.dtype_policy
        self.padding = None if strides == 1 else _symmetric_padding(kernel_size, atrous_rate)
        if global_context:
            self.pre_global_context = switchable_atrous_conv.GlobalContext(
                name="pre_global_context", dtype=policy
            )
            self.post_global_context = switchable_atrous_conv.GlobalContext(
                name="post_global_context", dtype=policy
            )
        if switchable_atrous and strides == 1:
            self.conv = switchable_atrous_conv.SwitchableAtrousConv2D(
                filters,
                kernel_size,
                atrous_rate=atrous_rate,
                kernel_initializer=self.kernel_initializer,
                name="conv",
                dtype=policy,
            )
        else:
            self.conv = keras.layers.Conv2D(
                filters,
                kernel_size,
                strides=strides,
                padding="same" if strides == 1 else "valid",
                dilation_rate=atrous_rate,
                use_bias=use_bias,
                kernel_initializer=self.kernel_initializer,
                name="conv",
                dtype=policy,
            )
        if use_bn:
            self.batch_norm = normalization.batch_norm(
                "batch_norm",
                sync=sync_batch_norm,
                gamma_initializer=bn_gamma_initializer,
                dtype=policy,
            )

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.global_context:
            self.pre_global_context.build(shape)
        if self.padding is not None:
            shape = _padded_shape(shape, self.padding)
        self.conv.build(shape)
        shape = self.conv.compute_output_shape(shape)
        if self.global_context:
            self.post_global_context.build(shape)
        if self.use_bn:
            self.batch_norm.build(shape)

    def call(self, inputs, training=None):
        dtype = self.compute_dtype
        x = inputs
        if self.global_context:
            x = self.pre_global_context(x)
        if self.padding is not None:
            x = ops.pad(x, ((0, 0), self.padding, self.padding, (0, 0)))
        inference_bn = not training and self.use_bn and dtype in FOLDED_DTYPES
        if inference_bn and not self.global_context and isinstance(self.conv, keras.layers.Conv2D):
            scale, bias = folded_batch_norm(self.batch_norm)
            x = ops.conv(
                x,
                ops.cast(float32_value(self.conv.kernel) * scale, dtype),
                strides=self.strides,
                padding=self.conv.padding,
                dilation_rate=self.atrous_rate,
            )
            x = x + ops.cast(bias, dtype)
        else:
            x = self.conv(x)
            if self.global_context:
                x = self.post_global_context(x)
            if inference_bn:
                scale, bias = folded_batch_norm(self.batch_norm)
                x = x * ops.cast(scale, dtype) + ops.cast(bias, dtype)
            elif self.use_bn:
                x = self.batch_norm(x, training=training)
        if self.activation == "relu":
            x = ops.relu(x)
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if self.padding is not None:
            shape = _padded_shape(shape, self.padding)
        return self.conv.compute_output_shape(shape)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "atrous_rate": self.atrous_rate,
            "use_bias": self.use_bias,
            "use_bn": self.use_bn,
            "activation": self.activation,
            "bn_gamma_initializer": self.bn_gamma_initializer,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "switchable_atrous": self.switchable_atrous,
            "global_context": self.global_context,
            "sync_batch_norm": self.sync_batch_norm,
        }


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class SeparableConvBN(keras.layers.Layer):
    """Depthwise conv + BN + ReLU, then pointwise 1x1 conv + BN + ReLU.

    This is deeplab2's `SeparableConv2DSame` with batch norm and ReLU after both
    convolutions. Input: `[batch, height, width, in_channels]`; output: `[batch,
    height, width, filters]` (stride 1).

    Args:
      filters: Output channels of the pointwise convolution.
      kernel_size: Depthwise kernel size.
      atrous_rate: Depthwise dilation rate.
      sync_batch_norm: Synchronise BN statistics across replicas.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        atrous_rate: int = 1,
        sync_batch_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.atrous_rate = atrous_rate
        self.sync_batch_norm = sync_batch_norm
        policy = self.dtype_policy
        self.depthwise_conv = keras.layers.DepthwiseConv2D(
            kernel_size,
            padding="same",
            dilation_rate=atrous_rate,
            use_bias=False,
            name="depthwise_conv",
            dtype=policy,
        )
        self.depthwise_batch_norm = normalization.batch_norm(
            "depthwise_batch_norm", sync=sync_batch_norm, dtype=policy
        )
        self.pointwise = ConvBN(
            filters,
            1,
            activation="relu",
            sync_batch_norm=sync_batch_norm,
            name="pointwise",
            dtype=policy,
        )

    def build(self, input_shape):
        self.depthwise_conv.build(input_shape)
        self.depthwise_batch_norm.build(input_shape)
        self.pointwise.build(input_shape)

    def call(self, inputs, training=None):
        dtype = self.compute_dtype
        if not training and dtype in FOLDED_DTYPES:
            scale, bias = folded_batch_norm(self.depthwise_batch_norm)
            kernel = float32_value(self.depthwise_conv.kernel) * ops.reshape(scale, (1, 1, -1, 1))
            x = ops.depthwise_conv(
                inputs, ops.cast(kernel, dtype), padding="same", dilation_rate=self.atrous_rate
            )
            x = x + ops.cast(bias, dtype)
        else:
            x = self.depthwise_conv(inputs)
            x = self.depthwise_batch_norm(x, training=training)
        return self.pointwise(ops.relu(x), training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "atrous_rate": self.atrous_rate,
            "sync_batch_norm": self.sync_batch_norm,
        }


def conv_bn_act(
    conv_type: str,
    filters: int,
    kernel_size: int,
    *,
    name: str,
    atrous_rate: int = 1,
    sync_batch_norm: bool = False,
    dtype=None,
) -> keras.layers.Layer:
    """The regular/separable switch: a stride-1 conv + BN + ReLU of either type.

    Args:
      conv_type: `standard` (ConvBN) or `separable` (SeparableConvBN).
      filters: Output channels.
      kernel_size: Kernel size.
      name: Layer name.
      atrous_rate: Dilation rate.
      sync_batch_norm: Synchronise BN statistics across replicas.
      dtype: Dtype policy.

    Returns:
      The layer.
    """
    if conv_type == "standard":
        return ConvBN(
            filters,
            kernel_size,
            atrous_rate=atrous_rate,
            activation="relu",
            sync_batch_norm=sync_batch_norm,
            name=name,
            dtype=dtype,
        )
    if conv_type == "separable":
        return SeparableConvBN(
            filters,
            kernel_size,
            atrous_rate=atrous_rate,
            sync_batch_norm=sync_batch_norm,
            name=name,
            dtype=dtype,
        )
    raise ValueError(f"{name}: unknown conv type {conv_type!r}; expected one of {CONV_TYPES}")
