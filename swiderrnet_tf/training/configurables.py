"""The functions and plain classes that gin files may name.

Gin binds factories, never Keras layer classes (gin replaces a class's
`__init__`, which breaks `from_config` on reload): the model arrives as
`@build_panoptic_deeplab`, the input pipeline as `@build_dataset`, the loss as
`@PanopticLoss`, and the trainer calls them inside `strategy.scope()`.

Functions that take `**kwargs` are registered with an allowlist, so a typo such
as `build_panoptic_deeplab.aspp_chanels = 128` fails when the gin file is
parsed, naming the parameter, instead of after the model has been built.

Importing this module registers everything; the trainer, the evaluator and
the gin-file test import it before parsing.
"""

import inspect

import gin

from swiderrnet_tf.backbones import registry
from swiderrnet_tf.data import classification_info  # noqa: F401  (register_classification_dataset)
from swiderrnet_tf.data import classification_synthetic
from swiderrnet_tf.data import dataset_info  # noqa: F401  (registers register_*_dataset)
from swiderrnet_tf.data import imagenet
from swiderrnet_tf.data import pipeline
from swiderrnet_tf.data import synthetic
from swiderrnet_tf.inference import multi_scale  # noqa: F401  (@multi_scale_predict_fn)
from swiderrnet_tf.losses import classification_losses
from swiderrnet_tf.losses import panoptic_losses
from swiderrnet_tf.meta_arch import classifier
from swiderrnet_tf.meta_arch import panoptic_deeplab
from swiderrnet_tf.search import spaces  # noqa: F401  (custom_space: a grid search's recipe)


def _keyword_names(fn) -> list[str]:
    return [
        name
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


# Arguments the trainer and the evaluator pass themselves; binding them in gin
# would be silently overridden, so gin refuses them.
_PASSED_BY_CALLER = ("num_classes", "sync_batch_norm")

MODEL_OPTIONS = tuple(
    name
    for name in _keyword_names(panoptic_deeplab.build_panoptic_deeplab)
    + list(panoptic_deeplab.HEAD_DEFAULTS)
    + list(panoptic_deeplab.SHORTHANDS)
    if name not in _PASSED_BY_CALLER
)

gin.external_configurable(
    panoptic_deeplab.build_panoptic_deeplab,
    name="build_panoptic_deeplab",
    allowlist=MODEL_OPTIONS,
)
gin.external_configurable(
    registry.create_backbone,
    name="create_backbone",
    allowlist=["name", *registry.OPTIONS],
)
gin.external_configurable(
    pipeline.build_dataset,
    name="build_dataset",
    denylist=["dataset_info", "file_pattern", "mode", "crop_size", "batch_size", "input_context"],
)
gin.external_configurable(
    panoptic_losses.PanopticLoss, name="PanopticLoss", denylist=["ignore_label"]
)
gin.external_configurable(
    synthetic.ensure_dataset,
    name="ensure_dataset",
    allowlist=[
        name
        for name, p in inspect.signature(synthetic.generate).parameters.items()
        if p.kind == p.KEYWORD_ONLY
    ],
)

# ImageNet pre-training: the classifier, its pipeline, loss and built-in set.
gin.external_configurable(
    classifier.build_classifier,
    name="build_classifier",
    allowlist=["backbone", "backbone_options"],
)
gin.external_configurable(
    imagenet.build_classification_dataset,
    name="build_classification_dataset",
    denylist=[
        "dataset_info",
        "file_pattern",
        "mode",
        "image_size",
        "batch_size",
        "input_context",
        "seed",
    ],
)
gin.external_configurable(
    classification_losses.ClassificationLoss,
    name="ClassificationLoss",
    denylist=["num_classes", "decayed_variables"],
)
gin.external_configurable(
    classification_synthetic.ensure_dataset,
    name="ensure_classification_dataset",
    allowlist=[
        name
        for name, p in inspect.signature(classification_synthetic.generate).parameters.items()
        if p.kind == p.KEYWORD_ONLY
    ],
)


def check_backbone_options(options, where: str) -> None:
    """Raises a ValueError naming unknown keys of a `backbone_options` dict."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise ValueError(f"{where} must be a dict, got {options!r}")
    unknown = sorted(set(options) - set(registry.OPTIONS))
    if unknown:
        raise ValueError(
            f"{where} has unknown option(s) {unknown}; valid options: {list(registry.OPTIONS)}"
        )
