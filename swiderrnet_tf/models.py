"""`create_model` and `list_models`: Panoptic-DeepLab with a named SWideRNet, in one call.

    model = swiderrnet_tf.create_model("swidernet_0.25_0.25_0.75", dataset="cityscapes",
                                       regime="fast")
    swiderrnet_tf.list_models("swidernet_0.25_*")

Names are those of the backbone registry (`backbones.registry`): every
member of the paper's S_fast and S_strong, `swidernet_1_1_4.5` and
`wide_resnet41`, or any other `swidernet_<w1>_<w2>_<l>`. The dataset sets the
number of classes; `regime` picks the paper's strong (regular convolutions)
or fast (separable, "Sep-Conv") decoder and heads.
"""

from swiderrnet_tf.backbones import registry
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.meta_arch import panoptic_deeplab


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style `pattern`, sorted.

    Example: `list_models("swidernet_0.25_*")` lists the narrowest fast variants.
    """
    return registry.list_backbones(pattern)


def create_model(
    name: str,
    *,
    dataset="cityscapes",
    regime: str = "fast",
    weights: str | None = None,
    output_stride: int = 16,
    backbone_options: dict | None = None,
    **head_options,
):
    """Builds Panoptic-DeepLab with the SWideRNet backbone `name`.

    Args:
      name: A name of `list_models()`, or any `swidernet_<w1>_<w2>_<l>`.
      dataset: A registered dataset name or a `DatasetInfo`: the classes.
      regime: `fast` or `strong` (paper section 4.1).
      weights: Optional weights to load: a `.weights.h5` file, a training
        checkpoint prefix or a run folder (its newest checkpoint).
      output_stride: 8, 16 or 32.
      backbone_options: Backbone options (`backbones.registry.OPTIONS`), e.g.
        `{"layout": "deeplab2"}`.
      **head_options: Decoder and head options of `build_panoptic_deeplab`
        (e.g. `aspp_channels=128`).

    Returns:
      The Keras model: `[batch, height, width, 3]` images in [0, 255] to a
      dict of `semantic_logits`, `center_heatmap` and `offsets`.
    """
    info = (
        dataset
        if isinstance(dataset, dataset_info_lib.DatasetInfo)
        else dataset_info_lib.get_dataset_info(dataset)
    )
    model = panoptic_deeplab.build_panoptic_deeplab(
        name,
        info.num_classes,
        regime,
        output_stride=output_stride,
        backbone_options=backbone_options,
        **head_options,
    )
    if weights is not None:
        # Checkpoints are TensorFlow's: imported only here, so that building a
        # model also works where only JAX is installed.
        from swiderrnet_tf.inference import checkpoints

        checkpoints.restore_model(model, weights)
    return model
