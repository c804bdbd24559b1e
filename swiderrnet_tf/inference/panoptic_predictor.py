"""Model outputs -> panoptic maps, with the merge settings of the dataset.

`panoptic_predictor(model, info)` returns the function every evaluation and
the `Predictor` call on a batch of images: the network (single scale, or over
scales and flips through `predict_fn_factory`), then the Panoptic-DeepLab
merge with the settings of `info` (`DatasetInfo.merge_settings`). In gin,
`panoptic_predictor.center_threshold`, `.nms_kernel` and `.keep_k_centers`
replace the dataset's values and
`panoptic_predictor.predict_fn_factory = @multi_scale_predict_fn` averages
scales and flips (`multi_scale`).
"""

import gin

from swiderrnet_tf import common
from swiderrnet_tf.postprocess import panoptic_merge

# The merge settings `panoptic_predictor` may replace.
SETTINGS = ("center_threshold", "nms_kernel", "keep_k_centers")
OUTPUT_KEYS = (
    common.PANOPTIC,
    common.SEMANTIC,
    common.INSTANCE,
    common.INSTANCE_SCORES,
)


def single_scale_predict_fn(model):
    """`predict_fn(images)`: the model's outputs at the input scale, inference mode."""

    def predict_fn(images):
        return model(images, training=False)

    return predict_fn


def merge_settings(info, **overrides) -> dict:
    """The dataset's merge settings with the given ones (not None) replacing them.

    Args:
      info: The `DatasetInfo`.
      **overrides: Any of `SETTINGS`; None keeps the dataset's value.

    Returns:
      Keyword arguments of `panoptic_merge.panoptic_merge`.
    """
    unknown = sorted(set(overrides) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown merge setting(s) {unknown}; known: {list(SETTINGS)}")
    settings = info.merge_settings()
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


@gin.configurable(denylist=["model", "info"])
def panoptic_predictor(
    model,
    info,
    *,
    predict_fn_factory=single_scale_predict_fn,
    center_threshold: float | None = None,
    nms_kernel: int | None = None,
    keep_k_centers: int | None = None,
    output_keys=OUTPUT_KEYS,
):
    """Returns `predict(images) -> {panoptic, semantic, instance, instance_scores}`.

    Args:
      model: The Panoptic-DeepLab model.
      info: The dataset (`DatasetInfo`): classes, things, label divisor, void
        and the merge settings.
      predict_fn_factory: `factory(model) -> predict_fn(images) -> outputs`.
      center_threshold: Center heatmap threshold (None: the dataset's).
      nms_kernel: Center NMS window (None: the dataset's).
      keep_k_centers: Most centers per image (None: the dataset's).
      output_keys: The merge outputs returned (`common` keys).

    Returns:
      A function of `[batch, height, width, 3]` images (static shape) that
      returns `[batch, height, width]` maps.
    """
    predict_fn = predict_fn_factory(model)
    settings = merge_settings(
        info,
        center_threshold=center_threshold,
        nms_kernel=nms_kernel,
        keep_k_centers=keep_k_centers,
    )
    with_probabilities = common.SEMANTIC_PROBABILITIES in output_keys

    def predict(images):
        outputs = predict_fn(images)
        merged = panoptic_merge.panoptic_merge(
            outputs[common.SEMANTIC_LOGITS],
            outputs[common.CENTER_HEATMAP],
            outputs[common.OFFSETS],
            return_semantic_probabilities=with_probabilities,
            **settings,
        )
        return {key: merged[key] for key in output_keys}

    return predict
