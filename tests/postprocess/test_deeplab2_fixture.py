"""The merge reproduces deeplab2's post-processing on the reference fixture.

The fixture (`tests/testdata/deeplab2_swidernet_tiny`, see its README) holds
deeplab2's upsampled model outputs and what its pure-TF post-processor made of
them. Fed with those very arrays, the merge must reproduce every integer map
exactly: the README's near-ties (semantic gaps down to 1.4e-5, center distance
gaps down to 4.2e-4 px) only matter when the network itself is recomputed.
Instance numbering: ours follows deeplab2's documented order (centers in
row-major order; panoptic instances numbered per class by first pixel), so maps
are compared directly, without a bijection.
"""

import numpy as np
import pytest
import tensorflow as tf

from swiderrnet_tf import common
from swiderrnet_tf.postprocess import panoptic_merge

# The fixture's post-processing settings (README, "Post-processing").
FIXTURE_SETTINGS = dict(
    thing_classes=[1, 2, 3],
    label_divisor=256,
    stuff_area_limit=0,
    center_threshold=0.1,
    nms_kernel=3,
    keep_k_centers=200,
    void_label=255,
)


def load_fixture(testdata):
    folder = testdata / "deeplab2_swidernet_tiny"
    return {
        name: np.load(folder / f"{name}.npy")
        for name in (
            "semantic_logits",
            "center_heatmap",
            "offset_map",
            "semantic_pred",
            "instance_pred",
            "panoptic_pred",
            "instance_center_pred",
            "instance_scores",
        )
    }


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "xla"])
def test_reproduces_deeplab2(testdata, jit):
    fixture = load_fixture(testdata)

    def run(logits, heatmap, offsets):
        return panoptic_merge.panoptic_merge(logits, heatmap, offsets, **FIXTURE_SETTINGS)

    if jit:
        run = tf.function(run, jit_compile=True)
    out = run(
        tf.constant(fixture["semantic_logits"]),
        tf.constant(fixture["center_heatmap"][..., None]),
        tf.constant(fixture["offset_map"]),
    )
    out = {k: v.numpy() for k, v in out.items()}

    np.testing.assert_array_equal(out[common.SEMANTIC], fixture["semantic_pred"])
    np.testing.assert_array_equal(out[common.INSTANCE], fixture["instance_pred"])
    np.testing.assert_array_equal(out[common.PANOPTIC], fixture["panoptic_pred"])

    # deeplab2's center map: the NMS-kept heatmap value at each center, 0 elsewhere.
    scores = out[common.CENTER_SCORES][0]
    points = out[common.CENTER_POINTS][0][scores > 0]
    assert len(points) == 122  # README: 122 centers, all within k = 200
    center_map = np.zeros_like(fixture["instance_center_pred"][0])
    center_map[points[:, 0], points[:, 1]] = scores[scores > 0]
    np.testing.assert_array_equal(center_map, fixture["instance_center_pred"][0])

    # deeplab2's `instance_scores` is the center score of each thing pixel's instance.
    instance = out[common.INSTANCE]
    center_score_map = np.where(instance > 0, np.concatenate([[0.0], scores])[instance], 0.0)
    np.testing.assert_array_equal(center_score_map, fixture["instance_scores"])

    # Our instance score is deeplab2's `combined_instance_scores`: per panoptic
    # segment, mean probability of its class times mean instance score; here
    # computed from the fixture's own panoptic map and scores.
    logits = fixture["semantic_logits"][0].astype(np.float64)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    panoptic = fixture["panoptic_pred"][0]
    expected = np.zeros(panoptic.shape)
    for segment in np.unique(panoptic[fixture["instance_pred"][0] > 0]):
        mask = panoptic == segment
        semantic_class = segment // 256
        expected[mask] = (
            probabilities[mask, semantic_class].mean() * fixture["instance_scores"][0][mask].mean()
        )
    np.testing.assert_allclose(out[common.INSTANCE_SCORES][0], expected, rtol=1e-5)
