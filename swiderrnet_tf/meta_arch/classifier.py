"""The ImageNet classifier of a SWideRNet: the backbone with its classification head.

The network the paper pre-trains (its Table 1): the backbone, global average
pooling of `res5` and a fully connected layer to the class logits (the softmax
belongs to the loss). A pre-training run checkpoints it as `model`, so its
variables sit where a panoptic model keeps `model/backbone`.
"""

import keras

from swiderrnet_tf.backbones import registry


def build_classifier(
    backbone: str,
    *,
    num_classes: int,
    sync_batch_norm: bool = False,
    backbone_options: dict | None = None,
) -> keras.Model:
    """`create_backbone(backbone, classification_classes=num_classes, ...)`.

    Args:
      backbone: A registered variant, e.g. `swidernet_1_1_1`.
      num_classes: Classes of the head (1000 for ImageNet-1k).
      sync_batch_norm: Synchronise batch norm over replicas.
      backbone_options: Other `create_backbone` options, e.g.
        `{"layout": "deeplab2", "squeeze_excite": False, "drop_path_keep_prob": 0.8}`.

    Returns:
      The model: `[batch, h, w, 3]` images in 0..255 -> dict of `res2..res5`
      and `classification_logits` `[batch, num_classes]`.
    """
    options = dict(backbone_options or {})
    for key in ("classification_classes", "sync_batch_norm"):
        if key in options:
            raise ValueError(f"build_classifier.backbone_options may not set {key!r}")
    return registry.create_backbone(
        backbone, classification_classes=num_classes, sync_batch_norm=sync_batch_norm, **options
    )
