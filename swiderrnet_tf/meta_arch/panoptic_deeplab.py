"""Panoptic-DeepLab (Cheng et al. 2020) with a SWideRNet backbone.

Dual decoders (semantic; instance) each with its own ASPP on res5 and fusion
with res3 and res2, then three heads: semantic logits, the instance center
heatmap and the (dy, dx) offsets to the instance center. Head outputs are at
stride 4 and are resized (bilinear, corner-aligned) to the input size; offsets
are rescaled by the resize ratio so they are in input pixels.

Regimes (paper section 4.1, Table 3): `strong` uses regular convolutions
everywhere; `fast` ("Sep-Conv") makes the ASPP atrous convolutions, the 5x5
fusion convolutions and the 5x5 head convolutions depthwise-separable. Every
width and conv type a deeplab2 Panoptic-DeepLab config sets can be overridden.

Deviations from deeplab2:
  1. ASPP image pooling is global, so any input size works (DESIGN 2).
  2. The outputs are float32 under mixed precision.
"""

import keras
from keras import ops

from swiderrnet_tf import common
from swiderrnet_tf.backbones import registry
from swiderrnet_tf.layers import conv_bn
from swiderrnet_tf.layers import resize
from swiderrnet_tf.meta_arch import decoder

REGIMES = ("strong", "fast")
_ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}

# Every head option with its default (None: derived from the regime or the
# output stride). The instance branch defaults are Panoptic-DeepLab's.
HEAD_DEFAULTS = {
    "high_level_endpoint": common.RES5,
    "low_level_endpoints": (common.RES3, common.RES2),
    "semantic_aspp_channels": 256,
    "semantic_atrous_rates": None,
    "semantic_decoder_channels": 256,
    "semantic_low_level_channels": (64, 32),
    "semantic_head_channels": 256,
    "instance_aspp_channels": 256,
    "instance_atrous_rates": None,
    "instance_decoder_channels": 128,
    "instance_low_level_channels": (32, 16),
    "center_head_channels": 32,
    "offset_head_channels": 32,
    "semantic_aspp_conv_type": None,
    "instance_aspp_conv_type": None,
    "semantic_decoder_conv_type": None,
    "instance_decoder_conv_type": None,
    "semantic_head_conv_type": None,
    "center_head_conv_type": None,
    "offset_head_conv_type": None,
    "aspp_dropout": 0.1,
    "sync_batch_norm": False,
}
# Shorthands that set one option of both branches (or all three heads).
SHORTHANDS = {
    "aspp_channels": ("semantic_aspp_channels", "instance_aspp_channels"),
    "atrous_rates": ("semantic_atrous_rates", "instance_atrous_rates"),
    "aspp_conv_type": ("semantic_aspp_conv_type", "instance_aspp_conv_type"),
    "decoder_conv_type": ("semantic_decoder_conv_type", "instance_decoder_conv_type"),
    "head_conv_type": ("semantic_head_conv_type", "center_head_conv_type", "offset_head_conv_type"),
}
_CONV_TYPE_KEYS = tuple(k for k in HEAD_DEFAULTS if k.endswith("_conv_type"))


def resolve_head_config(regime: str, output_stride: int, overrides: dict) -> dict:
    """Fills every head option from the regime, the output stride and overrides.

    Specific options win over shorthands, which win over the regime defaults.

    Raises:
      ValueError: On an unknown option, regime, conv type or output stride.
    """
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; expected one of {REGIMES}")
    if output_stride not in _ASPP_RATES:
        raise ValueError(f"output_stride must be one of {sorted(_ASPP_RATES)}, got {output_stride}")
    unknown = sorted(set(overrides) - set(HEAD_DEFAULTS) - set(SHORTHANDS))
    if unknown:
        raise ValueError(
            f"unknown Panoptic-DeepLab option(s) {unknown}; valid options: "
            f"{sorted(HEAD_DEFAULTS) + sorted(SHORTHANDS)}"
        )
    config = dict(HEAD_DEFAULTS)
    for key in _CONV_TYPE_KEYS:
        config[key] = "separable" if regime == "fast" else "standard"
    for key in ("semantic_atrous_rates", "instance_atrous_rates"):
        config[key] = _ASPP_RATES[output_stride]
    for shorthand, targets in SHORTHANDS.items():
        if shorthand in overrides:
            for target in targets:
                config[target] = overrides[shorthand]
    config.update({k: v for k, v in overrides.items() if k in HEAD_DEFAULTS})
    for key in _CONV_TYPE_KEYS:
        if config[key] not in conv_bn.CONV_TYPES:
            raise ValueError(f"{key} must be one of {conv_bn.CONV_TYPES}, got {config[key]!r}")
    for key, value in config.items():
        if isinstance(value, list):
            config[key] = tuple(value)
    return config


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class ResizeToInput(keras.layers.Layer):
    """Resizes stride-4 head outputs to the input size; rescales offsets.

    Call on `[semantic_logits, center_heatmap, offsets, images]`; returns the
    model's output dict. Runs in float32 whatever the policy of the rest.
    """

    def call(self, inputs):
        semantic, center, offsets, images = inputs
        size = ops.shape(images)[1:3]
        # Corner-aligned resizing maps head pixel i to input pixel i * ratio.
        out_size = ops.cast(ops.stack(size), "float32")
        in_size = ops.cast(ops.stack(ops.shape(offsets)[1:3]), "float32")
        ratio = (out_size - 1.0) / ops.maximum(in_size - 1.0, 1.0)  # [2] = (dy, dx) scales
        return {
            common.SEMANTIC_LOGITS: resize.resize_align_corners(semantic, size),
            common.CENTER_HEATMAP: resize.resize_align_corners(center, size),
            common.OFFSETS: resize.resize_align_corners(offsets * ratio, size),
        }

    def compute_output_spec(self, inputs):
        semantic, center, offsets, images = inputs
        spatial = tuple(images.shape[:3])

        def spec(x):
            return keras.KerasTensor((*spatial, x.shape[-1]), dtype=self.compute_dtype)

        return {
            common.SEMANTIC_LOGITS: spec(semantic),
            common.CENTER_HEATMAP: spec(center),
            common.OFFSETS: spec(offsets),
        }


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class PanopticDeepLab(keras.Model):
    """Panoptic-DeepLab around a backbone that returns `res2..res5`.

    Input: images `[batch, height, width, 3]` in [0, 255], uint8 or float, any
    size. Output: dict with `semantic_logits` `[batch, height, width,
    num_classes]`, `center_heatmap` `[batch, height, width, 1]` and `offsets`
    `[batch, height, width, 2]` (dy, dx in input pixels), float32.

    Args:
      backbone: The backbone model.
      num_classes: Semantic classes.
      regime: `strong` or `fast`; sets the default conv types.
      **head_config: Options of `HEAD_DEFAULTS` / `SHORTHANDS`.
    """

    def __init__(self, backbone, num_classes: int, regime: str = "strong", **head_config):
        name = head_config.pop("name", "panoptic_deeplab")
        trainable = head_config.pop("trainable", True)
        output_stride = getattr(backbone, "output_stride", 16)
        config = resolve_head_config(regime, output_stride, head_config)
        sync = config["sync_batch_norm"]

        def branch(prefix, name):
            return decoder.DecoderBranch(
                aspp_channels=config[f"{prefix}_aspp_channels"],
                atrous_rates=config[f"{prefix}_atrous_rates"],
                decoder_channels=config[f"{prefix}_decoder_channels"],
                low_level_channels=config[f"{prefix}_low_level_channels"],
                aspp_conv_type=config[f"{prefix}_aspp_conv_type"],
                decoder_conv_type=config[f"{prefix}_decoder_conv_type"],
                aspp_dropout=config["aspp_dropout"],
                sync_batch_norm=sync,
                name=name,
            )

        def head(channels, outputs, conv_type, name):
            return decoder.PredictionHead(
                channels, outputs, conv_type=conv_type, sync_batch_norm=sync, name=name
            )

        images = keras.Input((None, None, 3), name="images")
        endpoints = backbone(images)
        features = [endpoints[config["high_level_endpoint"]]]
        features += [endpoints[key] for key in config["low_level_endpoints"]]
        semantic = branch("semantic", "semantic_decoder")(features)
        instance = branch("instance", "instance_decoder")(features)
        semantic_logits = head(
            config["semantic_head_channels"],
            num_classes,
            config["semantic_head_conv_type"],
            "semantic_head",
        )(semantic)
        center = head(
            config["center_head_channels"], 1, config["center_head_conv_type"], "center_head"
        )(instance)
        offsets = head(
            config["offset_head_channels"], 2, config["offset_head_conv_type"], "offset_head"
        )(instance)
        outputs = ResizeToInput(dtype="float32", name="resize_to_input")(
            [semantic_logits, center, offsets, images]
        )
        super().__init__(inputs=images, outputs=outputs, name=name, trainable=trainable)
        self.backbone = backbone
        self.num_classes = num_classes
        self.regime = regime
        self.head_config = config

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "regime": self.regime,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in self.head_config.items()},
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def build_panoptic_deeplab(
    backbone="swidernet_0.25_0.25_0.75",
    num_classes: int = 19,
    regime: str = "strong",
    output_stride: int = 16,
    backbone_options: dict | None = None,
    **overrides,
) -> PanopticDeepLab:
    """Builds Panoptic-DeepLab.

    Args:
      backbone: A registry name (see `swiderrnet_tf.backbones.list_backbones`) or a
        backbone model returning `res2..res5`.
      num_classes: Semantic classes.
      regime: `strong` (regular convolutions) or `fast` (separable ASPP, decoder and
        head convolutions).
      output_stride: Backbone output stride (8, 16 or 32); sets the ASPP rates.
      backbone_options: Overrides for `create_backbone` when `backbone` is a name,
        e.g. `{"layout": "deeplab2", "drop_path_keep_prob": 0.8, "recompute": "blocks"}`.
      **overrides: Head options, see `HEAD_DEFAULTS` and `SHORTHANDS`.

    Returns:
      The model.
    """
    if isinstance(backbone, str):
        options = dict(backbone_options or {})
        if options.get("output_stride", output_stride) != output_stride:
            raise ValueError(
                f"backbone_options output_stride={options['output_stride']} disagrees with "
                f"output_stride={output_stride}"
            )
        options["output_stride"] = output_stride
        if overrides.get("sync_batch_norm"):
            options.setdefault("sync_batch_norm", True)
        backbone = registry.create_backbone(backbone, **options)
    elif backbone_options:
        raise ValueError("backbone_options only apply when the backbone is given by name")
    elif getattr(backbone, "output_stride", output_stride) != output_stride:
        raise ValueError(
            f"the backbone has output stride {backbone.output_stride}, "
            f"but output_stride={output_stride} was asked for"
        )
    return PanopticDeepLab(backbone, num_classes, regime=regime, **overrides)
