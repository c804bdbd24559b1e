"""SWideRNet-(w1, w2, l): Scaling Wide Residual Networks (Chen, Wang, Qiao 2020).

A Wide-ResNet-41 scaled by three factors: w1 scales the channels of the stem
and the first stage (conv1, conv2), w2 the channels and l the depth of the other
four stages (paper Table 1, section 3.1), with simplified squeeze-and-excitation
and Switchable Atrous Convolution in the last stage. The block layout is computed
by `block_plan`; this module turns it into a functional Keras model.

The model takes images `[batch, height, width, 3]` with values in [0, 255] (uint8
or float) of any size, normalises them as `x / 127.5 - 1` inside, and returns a
dict of endpoints `res2..res5` (activated features at strides 4, 8, 16 and the
output stride), plus `classification_logits` `[batch, classes]` when the
ImageNet head is on.

Deviations from the paper:
  1. The `deeplab2` layout (first-block strides, no max-pool, SE in all stages)
     is offered beside the paper's, to load the authors' released checkpoints.
  2. In the paper layout a block that both strides and changes channels (a
     one-block stage, l < 0.67) strides its projection shortcut.
  3. The classification head returns logits; the softmax belongs to the loss.
  4. The deeplab2 layout uses deeplab2's hard-sigmoid slope (0.16667) in SE,
     the paper layout the paper's 1/6 (see `layers.squeeze_excite`).
  5. Activation recomputation (`recompute`, deeplab2's
     `conv_use_recompute_grad`) is off by default.
"""

import keras

from swiderrnet_tf import common
from swiderrnet_tf.backbones import block_plan
from swiderrnet_tf.layers import conv_bn
from swiderrnet_tf.layers import residual_blocks
from swiderrnet_tf.layers import squeeze_excite as squeeze_excite_lib

RECOMPUTE_MODES = ("off", "blocks")
RECOMPUTE_STRIDES = (2, 4, 8, 16, 32)


def recompute_from_stride(recompute) -> int | None:
    """Smallest stage stride whose blocks are recomputed (None: none are).

    Args:
      recompute: `off`, `blocks` (every residual block, as deeplab2's
        SWideRNet), or a stride S of `RECOMPUTE_STRIDES`: the blocks of the
        stages at stride S and beyond (stage k is at stride 2^k: 2 for stage 1,
        32 for stage 5, whatever the output stride).

    Raises:
      ValueError: On any other value.
    """
    if recompute == "off":
        return None
    if recompute == "blocks":
        return RECOMPUTE_STRIDES[0]
    if not isinstance(recompute, bool) and recompute in RECOMPUTE_STRIDES:
        return int(recompute)
    raise ValueError(
        f"backbone option recompute={recompute!r}: expected one of {list(RECOMPUTE_MODES)} "
        f"or a stage stride in {list(RECOMPUTE_STRIDES)}"
    )


def _pool(x):
    # deeplab2-style symmetric padding, so that the pooled map stays aligned with
    # the strided convolutions: output pixel i covers input pixels 2i-1..2i+1.
    x = keras.layers.ZeroPadding2D(padding=1, name="stage1_pool_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=block_plan.POOL)(x)


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class SWideRNet(keras.Model):
    """The SWideRNet backbone.

    Args:
      w1: Width multiplier of the stem and stage 1.
      w2: Width multiplier of stages 2-5.
      l: Depth multiplier of stages 2-5.
      layout: `paper` (Table 1) or `deeplab2` (released checkpoints).
      squeeze_excite: Use simplified squeeze-and-excitation.
      sac: Use Switchable Atrous Convolution (with global context) in stage 5.
      multi_grid: Optional unit rates multiplying the stage-5 atrous rates block
        by block (cyclically), e.g. (1, 2, 4) for the paper's Table 3 "MG".
      output_stride: 8, 16 or 32.
      drop_path_keep_prob: Drop-path survival probability (1.0 disables it; the
        paper trains with 0.8).
      drop_path_schedule: `constant` (paper) or `linear` by stage (deeplab2).
      classification_classes: Size of the ImageNet head (global pool + dense on
        res5); 0 for no head.
      sync_batch_norm: Synchronise BN statistics across replicas.
      recompute: Recompute residual blocks' activations in the backward pass:
        `off`, `blocks` or a stage stride (see `recompute_from_stride`).
      **kwargs: `name`, `trainable`, passed to `keras.Model`.
    """

    def __init__(
        self,
        w1: float,
        w2: float,
        l: float,
        *,
        layout: str = "paper",
        squeeze_excite: bool = True,
        sac: bool = True,
        multi_grid=None,
        output_stride: int = 16,
        drop_path_keep_prob: float = 1.0,
        drop_path_schedule: str = "constant",
        classification_classes: int = 0,
        sync_batch_norm: bool = False,
        recompute="off",
        **kwargs,
    ):
        recompute_from = recompute_from_stride(recompute)
        plan = block_plan.make_plan(
            w1,
            w2,
            l,
            layout=layout,
            squeeze_excite=squeeze_excite,
            sac=sac,
            multi_grid=multi_grid,
            output_stride=output_stride,
            drop_path_keep_prob=drop_path_keep_prob,
            drop_path_schedule=drop_path_schedule,
        )
        # deeplab2's hard sigmoid constant, so its checkpoints reproduce exactly.
        se_gate_scale = (
            squeeze_excite_lib.DEEPLAB2_GATE_SCALE
            if layout == "deeplab2"
            else squeeze_excite_lib.PAPER_GATE_SCALE
        )
        images = keras.Input((None, None, 3), name="images")
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(images)
        # The stem has BN but no activation: the first block applies the ReLU.
        x = conv_bn.ConvBN(
            plan.stem_channels, 3, strides=2, sync_batch_norm=sync_batch_norm, name="stem"
        )(x)
        features = {}
        last_of_stage1 = [spec.name for spec in plan.blocks if spec.stage == 1][-1]
        for spec in plan.blocks:
            block_args = dict(
                strides=spec.strides,
                atrous_rate=spec.atrous_rate,
                squeeze_excite=spec.squeeze_excite,
                se_gate_scale=se_gate_scale,
                drop_path_keep_prob=spec.drop_path_keep_prob,
                sync_batch_norm=sync_batch_norm,
                recompute=recompute_from is not None and 2**spec.stage >= recompute_from,
                name=spec.name,
            )
            if spec.kind == "basic":
                block = residual_blocks.BasicBlock(
                    spec.filters,
                    second_atrous_rate=spec.second_atrous_rate,
                    stride_in_second_conv=spec.stride_in_second_conv,
                    **block_args,
                )
            else:
                block = residual_blocks.BottleneckBlock(
                    spec.filters, switchable_atrous=spec.switchable_atrous, **block_args
                )
            x = block(x)
            features[spec.name] = x
            if spec.name == last_of_stage1 and plan.max_pool:
                x = _pool(x)
                features[block_plan.POOL] = x
        outputs = {
            name: keras.layers.ReLU(name=name)(features[source])
            for name, source in plan.endpoints.items()
        }
        if classification_classes:
            pooled = keras.layers.GlobalAveragePooling2D(name="global_pool")(outputs[common.RES5])
            outputs[common.CLASSIFICATION_LOGITS] = keras.layers.Dense(
                classification_classes, name="classifier"
            )(pooled)
        super().__init__(inputs=images, outputs=outputs, **kwargs)

        self.w1 = w1
        self.w2 = w2
        self.l = l
        self.layout = layout
        self.squeeze_excite = squeeze_excite
        self.sac = sac
        self.multi_grid = list(multi_grid) if multi_grid else None
        self.output_stride = output_stride
        self.drop_path_keep_prob = drop_path_keep_prob
        self.drop_path_schedule = drop_path_schedule
        self.classification_classes = classification_classes
        self.sync_batch_norm = sync_batch_norm
        self.recompute = recompute
        self.plan = plan

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "w1": self.w1,
            "w2": self.w2,
            "l": self.l,
            "layout": self.layout,
            "squeeze_excite": self.squeeze_excite,
            "sac": self.sac,
            "multi_grid": self.multi_grid,
            "output_stride": self.output_stride,
            "drop_path_keep_prob": self.drop_path_keep_prob,
            "drop_path_schedule": self.drop_path_schedule,
            "classification_classes": self.classification_classes,
            "sync_batch_norm": self.sync_batch_norm,
            "recompute": self.recompute,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
