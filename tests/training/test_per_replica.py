"""Per-replica state under MirroredStrategy on two CPU devices.

Drop-path and dropout masks differ between replicas and samples and come back
with the seed; an unsynchronised batch norm leaves every replica with the mean
of the replicas' updates; recomputed blocks give the gradients and statistics
of plain ones. One subprocess (tests/training/per_replica_run.py) measures it
all, since the logical devices must be set before TensorFlow runs an op.
"""

import subprocess
import sys

import numpy as np
import pytest

from tests.training import helpers

SCRIPT = str(helpers.ROOT / "tests" / "training" / "per_replica_run.py")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("per_replica")
    done = subprocess.run(
        [sys.executable, SCRIPT, str(out)],
        env=helpers.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {
        name: dict(np.load(out / f"{name}.npz")) for name in ("masks", "batch_norm", "recompute")
    }


@pytest.mark.parametrize("mode", ["function", "xla"])
@pytest.mark.parametrize("layer, keep", [("drop_path", 0.5), ("dropout", 0.5)])
def test_masks_differ_between_replicas_and_samples_and_follow_the_seed(results, mode, layer, keep):
    masks = results["masks"]
    first = masks[f"{mode}_first_{layer}"]  # [steps, replicas, ...]
    # Kept entries are scaled by 1 / keep: 2.0 here.
    assert set(np.unique(first)) == {0.0, 1.0 / keep}
    for step in range(first.shape[0]):
        assert not np.array_equal(first[step, 0], first[step, 1]), (step, "same on both replicas")
        assert len(np.unique(first[step, 0])) == 2, (step, "same on every sample")
    assert not np.array_equal(first[0], first[1]), "same masks at two steps"
    # Same seed, same masks (a fresh build); another seed, other masks.
    np.testing.assert_array_equal(masks[f"{mode}_again_{layer}"], first)
    assert not np.array_equal(masks[f"{mode}_other_{layer}"], first)
    # 3 steps x 2 replicas x 512 samples (drop path) or 4 x 64 elements (dropout):
    # at least 3072 Bernoulli(0.5) draws, standard deviation of the rate <= 0.009.
    rate = np.mean(first > 0)
    assert abs(rate - keep) < 0.04, rate


def test_unsynchronised_batch_norm_copies_hold_the_mean_update(results):
    bn = results["batch_norm"]
    inputs = bn["inputs"].astype(np.float64)  # [replicas, batch, h, w, channels]
    # What each replica would write alone, from its batch's moments (biased
    # variance), moving statistics starting at mean 0 and variance 1, momentum 0.99.
    batch_mean = inputs.mean(axis=(1, 2, 3))  # [replicas, channels]
    batch_var = inputs.var(axis=(1, 2, 3))
    own_mean = 0.99 * 0.0 + 0.01 * batch_mean
    own_var = 0.99 * 1.0 + 0.01 * batch_var
    # The replicas' data differ (offset by 2 per replica), so their own updates do.
    assert np.abs(own_mean[0] - own_mean[1]).min() > 0.01
    for r in range(inputs.shape[0]):
        np.testing.assert_allclose(bn["moving_mean"][r], own_mean.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(bn["moving_variance"][r], own_var.mean(axis=0), rtol=1e-5)


@pytest.mark.parametrize("sync", [0, 1])
def test_recomputed_blocks_match_plain_blocks_on_each_replica(results, sync):
    rec = results["recompute"]
    plain_keys = [k for k in rec if k.startswith(f"sync{sync}_recompute0_")]
    assert any("_grad" in k for k in plain_keys) and any("moving" in k for k in plain_keys)
    for key in plain_keys:
        plain = rec[key]
        recomputed = rec[key.replace("recompute0", "recompute1")]
        # The same ops on the same values in another graph: float32 rounding
        # only (observed bitwise equal). A second moving-average update or
        # another drop-path mask changes values by percents.
        scale = np.abs(plain).max()
        np.testing.assert_allclose(
            recomputed, plain, rtol=0, atol=1e-5 * scale + 1e-12, err_msg=key
        )
    # Replicas saw different images: their gradients differ, their statistics do not.
    grads = [k for k in plain_keys if "_grad" in k]
    assert any(not np.allclose(rec[k][0], rec[k][1]) for k in grads)
    for key in (k for k in plain_keys if "moving" in k):
        np.testing.assert_array_equal(rec[key][0], rec[key][1], err_msg=key)
