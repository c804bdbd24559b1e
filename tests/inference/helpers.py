"""Small models and data shared by the inference tests."""

import pathlib

import numpy as np

from swiderrnet_tf.data import dataset_info
from swiderrnet_tf.meta_arch import panoptic_deeplab

ROOT = pathlib.Path(__file__).parents[2]
# The synthetic dataset: 6 classes, things 3..5, label divisor 1000.
INFO = dataset_info.SYNTHETIC


def tiny_model(seed: int = 4, num_classes: int = INFO.num_classes):
    """A tiny fast-regime Panoptic-DeepLab with random, non-trivial weights.

    Random BN statistics, switches and contexts make every path matter. The
    final head convolutions are scaled up and their biases zeroed, so that the
    outputs vary over the image: several classes, heatmap peaks above the
    merge threshold, and instances. The semantic biases centre each class's
    logits on a calibration image, so that classes compete across the image.
    """
    model = panoptic_deeplab.build_panoptic_deeplab(
        "swidernet_0.25_0.25_0.35",
        num_classes,
        "fast",
        aspp_channels=16,
        semantic_decoder_channels=16,
        semantic_head_channels=16,
        instance_decoder_channels=16,
        center_head_channels=8,
        offset_head_channels=8,
    )
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "seed_generator" in weight.path:
            continue
        value = rng.normal(0.0, 0.1, weight.shape)
        if weight.path.endswith(("moving_variance", "gamma")):
            value = rng.uniform(0.5, 1.5, weight.shape)
        elif weight.path.endswith("kernel"):
            value *= 10 / np.sqrt(np.prod(weight.shape[:-1]))
        if "final_conv" in weight.path:
            value = 30 * value if weight.path.endswith("kernel") else 0 * value
        weight.assign(value.astype("float32"))
    logits = model(random_images((1, 33, 33), seed + 1), training=False)["semantic_logits"]
    bias = model.get_layer("semantic_head").weights[-1]
    assert bias.path.endswith("final_conv/bias"), bias.path
    bias.assign(-np.mean(np.asarray(logits), axis=(0, 1, 2)))
    return model


def random_images(shape, seed: int = 0) -> np.ndarray:
    """Smooth random uint8 images (blocks of colour), so JPEG keeps them close."""
    rng = np.random.default_rng(seed)
    batch, height, width = shape
    coarse = rng.integers(0, 256, (batch, height // 4 + 1, width // 4 + 1, 3))
    return np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :height, :width].astype(np.uint8)
