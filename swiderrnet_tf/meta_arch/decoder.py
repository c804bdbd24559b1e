"""Panoptic-DeepLab's decoder branch and prediction head (Cheng et al. 2020).

A decoder branch runs its own ASPP on the backbone's last endpoint, then fuses
lower-level endpoints from the coarsest to the finest: each is projected by a
1x1 convolution + BN + ReLU, the running features are upsampled (bilinear,
corner-aligned) to its size and concatenated before it, and one 5x5 convolution
(regular or depthwise-separable) + BN + ReLU fuses them. A head is a 5x5
convolution + BN + ReLU and a final 1x1 convolution with bias.

Deviations from deeplab2:
  1. The ASPP atrous convolutions can be depthwise-separable (the paper's fast
     regime, "Sep-Conv").
"""

import keras
from keras import ops

from swiderrnet_tf.layers import aspp
from swiderrnet_tf.layers import conv_bn
from swiderrnet_tf.layers import resize


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class DecoderBranch(keras.layers.Layer):
    """One decoder branch (semantic or instance).

    Call it on `[high_level, low_level_1, low_level_2, ...]`, ordered from the
    coarsest low-level feature to the finest (e.g. res5, res3, res2). Returns
    `[batch, height_finest, width_finest, decoder_channels]`.

    Args:
      aspp_channels: ASPP width.
      atrous_rates: ASPP atrous rates.
      decoder_channels: Width of the fusion convolutions.
      low_level_channels: Projection width per low-level feature.
      aspp_conv_type: `standard` or `separable` ASPP atrous convolutions.
      decoder_conv_type: `standard` or `separable` fusion convolutions.
      aspp_dropout: Dropout after the ASPP projection.
      sync_batch_norm: Synchronise BN statistics across replicas.
    """

    def __init__(
        self,
        aspp_channels: int = 256,
        atrous_rates=(6, 12, 18),
        decoder_channels: int = 256,
        low_level_channels=(64, 32),
        aspp_conv_type: str = "standard",
        decoder_conv_type: str = "standard",
        aspp_dropout: float = 0.1,
        sync_batch_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.aspp_channels = aspp_channels
        self.atrous_rates = tuple(int(r) for r in atrous_rates)
        self.decoder_channels = decoder_channels
        self.low_level_channels = tuple(int(c) for c in low_level_channels)
        self.aspp_conv_type = aspp_conv_type
        self.decoder_conv_type = decoder_conv_type
        self.aspp_dropout = aspp_dropout
        self.sync_batch_norm = sync_batch_norm
        policy = self.dtype_policy
        self.aspp = aspp.ASPP(
            aspp_channels,
            self.atrous_rates,
            conv_type=aspp_conv_type,
            dropout=aspp_dropout,
            sync_batch_norm=sync_batch_norm,
            name="aspp",
            dtype=policy,
        )
        # One attribute per layer: tf.train.Checkpoint does not follow a Keras
        # layer's list attributes (see ASPP).
        for i, channels in enumerate(self.low_level_channels):
            projection = conv_bn.ConvBN(
                channels,
                1,
                activation="relu",
                sync_batch_norm=sync_batch_norm,
                name=f"low_level_conv{i + 1}",
                dtype=policy,
            )
            fusion = conv_bn.conv_bn_act(
                decoder_conv_type,
                decoder_channels,
                5,
                sync_batch_norm=sync_batch_norm,
                name=f"fusion_conv{i + 1}",
                dtype=policy,
            )
            setattr(self, f"low_level_conv{i + 1}", projection)
            setattr(self, f"fusion_conv{i + 1}", fusion)

    @property
    def low_level_convs(self):
        """The 1x1 projections of the low-level features, finest last."""
        return [
            getattr(self, f"low_level_conv{i + 1}") for i in range(len(self.low_level_channels))
        ]

    @property
    def fusion_convs(self):
        """The convolutions after each concatenation."""
        return [getattr(self, f"fusion_conv{i + 1}") for i in range(len(self.low_level_channels))]

    def build(self, input_shape):
        high, *lows = input_shape
        if len(lows) != len(self.low_level_channels):
            raise ValueError(
                f"{self.name}: got {len(lows)} low-level features for "
                f"{len(self.low_level_channels)} projection widths {self.low_level_channels}"
            )
        self.aspp.build(high)
        channels = self.aspp_channels
        for low, projection, fusion in zip(
            lows, self.low_level_convs, self.fusion_convs, strict=True
        ):
            projection.build(low)
            fusion.build((*low[:-1], channels + projection.filters))
            channels = self.decoder_channels

    def call(self, inputs, training=None):
        high, *lows = inputs
        x = self.aspp(high, training=training)
        for low, projection, fusion in zip(
            lows, self.low_level_convs, self.fusion_convs, strict=True
        ):
            low = projection(low, training=training)
            x = resize.resize_align_corners(x, ops.shape(low)[1:3])
            x = fusion(ops.concatenate([x, low], axis=-1), training=training)
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[-1][:-1], self.decoder_channels)

    def get_config(self):
        return {
            **super().get_config(),
            "aspp_channels": self.aspp_channels,
            "atrous_rates": list(self.atrous_rates),
            "decoder_channels": self.decoder_channels,
            "low_level_channels": list(self.low_level_channels),
            "aspp_conv_type": self.aspp_conv_type,
            "decoder_conv_type": self.decoder_conv_type,
            "aspp_dropout": self.aspp_dropout,
            "sync_batch_norm": self.sync_batch_norm,
        }


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class PredictionHead(keras.layers.Layer):
    """5x5 conv + BN + ReLU, then a 1x1 conv with bias.

    `[batch, height, width, channels]` -> `[batch, height, width, output_channels]`.

    Args:
      head_channels: Width of the 5x5 convolution.
      output_channels: Predicted channels (classes, 1 for the center heatmap, 2
        for offsets).
      conv_type: `standard` or `separable` 5x5 convolution.
      sync_batch_norm: Synchronise BN statistics across replicas.
    """

    def __init__(
        self,
        head_channels: int,
        output_channels: int,
        conv_type: str = "standard",
        sync_batch_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.head_channels = head_channels
        self.output_channels = output_channels
        self.conv_type = conv_type
        self.sync_batch_norm = sync_batch_norm
        self.conv_block = conv_bn.conv_bn_act(
            conv_type,
            head_channels,
            5,
            sync_batch_norm=sync_batch_norm,
            name="conv_block",
            dtype=self.dtype_policy,
        )
        # Panoptic-DeepLab initialises the last layers with a small normal. float32
        # under every policy: heatmap values rounded to bfloat16 make plateaus
        # whose equal maxima all survive NMS and split instances (PQ 88.0 -> 83.5
        # on the demo model), and near-equal logits tie.
        self.final_conv = keras.layers.Conv2D(
            output_channels,
            1,
            use_bias=True,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01),
            name="final_conv",
            dtype="float32",
        )

    def build(self, input_shape):
        self.conv_block.build(input_shape)
        self.final_conv.build((*input_shape[:-1], self.head_channels))

    def call(self, inputs, training=None):
        return self.final_conv(self.conv_block(inputs, training=training))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_channels)

    def get_config(self):
        return {
            **super().get_config(),
            "head_channels": self.head_channels,
            "output_channels": self.output_channels,
            "conv_type": self.conv_type,
            "sync_batch_norm": self.sync_batch_norm,
        }
