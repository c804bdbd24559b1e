"""Atrous Spatial Pyramid Pooling (DeepLabv3), for inputs of any size.

A 1x1 convolution, three 3x3 atrous convolutions (regular or depthwise-separable,
the paper's "Sep-Conv"), and image pooling, each with BN and ReLU, concatenated
in that order, projected by a 1x1 convolution + BN + ReLU, then dropout.

Deviations from deeplab2:
  1. Image pooling is always global average pooling. deeplab2 pools over a
     window fixed by the training crop, which equals global pooling at the crop
     size but breaks other input sizes.
  2. The atrous convolutions may be depthwise-separable (the fast regime).
  3. The dropout masks differ between replicas (`replica_random.Dropout`).
"""

import keras
from keras import ops

from swiderrnet_tf.layers import conv_bn
from swiderrnet_tf.layers import replica_random


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class ASPP(keras.layers.Layer):
    """ASPP over `[batch, height, width, in_channels]` -> `[batch, height, width, channels]`.

    Args:
      channels: Output channels of every branch and of the projection.
      atrous_rates: Rates of the three atrous branches.
      conv_type: `standard` or `separable` atrous branches.
      dropout: Dropout rate after the projection.
      sync_batch_norm: Synchronise BN statistics across replicas.
    """

    def __init__(
        self,
        channels: int = 256,
        atrous_rates=(6, 12, 18),
        conv_type: str = "standard",
        dropout: float = 0.1,
        sync_batch_norm: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if len(atrous_rates) != 3:
            raise ValueError(f"{self.name}: ASPP needs 3 atrous rates, got {list(atrous_rates)}")
        self.channels = channels
        self.atrous_rates = tuple(int(r) for r in atrous_rates)
        self.conv_type = conv_type
        self.dropout = dropout
        self.sync_batch_norm = sync_batch_norm
        policy = self.dtype_policy

        def one_by_one(name):
            return conv_bn.ConvBN(
                channels,
                1,
                activation="relu",
                sync_batch_norm=sync_batch_norm,
                name=name,
                dtype=policy,
            )

        self.conv_bn_act = one_by_one("conv_bn_act")
        # One attribute per layer: tf.train.Checkpoint does not follow a Keras
        # layer's list attributes, so layers kept in a list would be missing
        # from training checkpoints.
        for i, rate in enumerate(self.atrous_rates):
            layer = conv_bn.conv_bn_act(
                conv_type,
                channels,
                3,
                atrous_rate=rate,
                sync_batch_norm=sync_batch_norm,
                name=f"aspp_conv{i + 1}",
                dtype=policy,
            )
            setattr(self, f"aspp_conv{i + 1}", layer)
        self.pool_conv_bn_act = one_by_one("aspp_pool")
        self.proj_conv_bn_act = one_by_one("proj_conv_bn_act")
        self.proj_dropout = replica_random.Dropout(dropout, name="proj_dropout", dtype=policy)

    @property
    def atrous_convs(self):
        """The atrous branches, one per rate."""
        return [getattr(self, f"aspp_conv{i + 1}") for i in range(len(self.atrous_rates))]

    def build(self, input_shape):
        self.conv_bn_act.build(input_shape)
        for layer in self.atrous_convs:
            layer.build(input_shape)
        self.pool_conv_bn_act.build((input_shape[0], 1, 1, input_shape[-1]))
        self.proj_conv_bn_act.build((*input_shape[:-1], 5 * self.channels))

    def call(self, inputs, training=None):
        branches = [self.conv_bn_act(inputs, training=training)]
        branches += [layer(inputs, training=training) for layer in self.atrous_convs]
        pooled = ops.mean(inputs, axis=(1, 2), keepdims=True)  # [b, 1, 1, c_in]
        pooled = self.pool_conv_bn_act(pooled, training=training)  # [b, 1, 1, c]
        branches.append(ops.broadcast_to(pooled, ops.shape(branches[0])))
        x = ops.concatenate(branches, axis=-1)  # [b, h, w, 5c]
        x = self.proj_conv_bn_act(x, training=training)
        return self.proj_dropout(x, training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.channels)

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "atrous_rates": list(self.atrous_rates),
            "conv_type": self.conv_type,
            "dropout": self.dropout,
            "sync_batch_norm": self.sync_batch_norm,
        }
