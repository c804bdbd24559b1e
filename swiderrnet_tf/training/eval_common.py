"""Pieces every evaluation shares: batched prediction over replicas, restoring, looping.

`BatchPredictor` runs a predictor on host batches spread over the local
replicas; `restore_model` fills a model from a training checkpoint or a
weights file; `run_on_checkpoints` evaluates once or each new checkpoint of a
run (continuous evaluation); `write_results` writes the JSON and TensorBoard
scalars. Used by the panoptic (`eval_loop`) and classification
(`classification_eval`) evaluations.
"""

import os

import numpy as np
import tensorflow as tf
from absl import logging

from swiderrnet_tf.evaluation import report
from swiderrnet_tf.training import checkpointing
from swiderrnet_tf.training import distribution
from swiderrnet_tf.training import summaries


class BatchPredictor:
    """Runs a predictor on host batches, spread over the local replicas.

    Args:
      strategy: The strategy holding the model's variables.
      predict: `predict(images) -> dict` (see `panoptic_predictor`).
      batch_size: Images per call; smaller batches are padded to it.
    """

    def __init__(self, strategy, predict, batch_size: int):
        self.strategy = strategy
        self.batch_size = batch_size
        self.replicated = not distribution.is_multi_worker(strategy) and (
            strategy.num_replicas_in_sync > 1 or isinstance(strategy, tf.distribute.TPUStrategy)
        )
        if self.replicated:
            self.per_replica = distribution.per_replica_batch_size(batch_size, strategy)
            self._run = tf.function(lambda values: strategy.run(predict, args=(values,)))
        else:
            self._run = tf.function(predict)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """`[n, h, w, 3]` images (n <= batch_size) -> dict of `[n, h, w]` arrays."""
        count = images.shape[0]
        if count > self.batch_size:
            raise ValueError(f"got {count} images, more than the batch size {self.batch_size}")
        padding = [(0, self.batch_size - count)] + [(0, 0)] * (images.ndim - 1)
        images = np.pad(images, padding, mode="edge")
        if not self.replicated:
            outputs = self._run(tf.constant(images))
            return {k: v.numpy()[:count] for k, v in outputs.items()}
        per = self.per_replica

        def replica_images(context):
            start = context.replica_id_in_sync_group * per
            return tf.constant(images[start : start + per])

        values = self.strategy.experimental_distribute_values_from_function(replica_images)
        outputs = self._run(values)
        return {
            k: np.concatenate([t.numpy() for t in self.strategy.experimental_local_results(v)])[
                :count
            ]
            for k, v in outputs.items()
        }


def restore_model(model, checkpoint: str) -> int | None:
    """Loads model weights from a training checkpoint or a `.weights.h5` file.

    Args:
      model: The built model.
      checkpoint: A `ckpt-<step>` prefix, a `model_dir` (newest complete
        checkpoint) or a Keras `.weights.h5` file.

    Returns:
      The checkpoint's step, or None for a weights file.
    """
    if checkpoint.endswith(".h5"):
        model.load_weights(checkpoint)
        return None
    prefix = checkpoint
    if tf.io.gfile.isdir(checkpoint):
        prefix = checkpointing.latest_checkpoint(checkpoint)
        if prefix is None:
            raise FileNotFoundError(f"{checkpoint}: no complete training checkpoint here")
    if not checkpointing.is_complete(prefix):
        raise FileNotFoundError(f"{prefix}: no complete checkpoint (expected {prefix}.index)")
    try:
        status = tf.train.Checkpoint(model=model).read(prefix)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        message = checkpointing.explain_mismatch(prefix, e, os.path.dirname(prefix))
        raise ValueError(message) from e
    logging.info("Restored the model from %s", prefix)
    return checkpointing.checkpoint_step(prefix)


def replica_batch_size(strategy, batch_size: int) -> int:
    """`evaluate.batch_size` rounded up to a multiple of the local replicas."""
    replicas = 1 if distribution.is_multi_worker(strategy) else strategy.num_replicas_in_sync
    if batch_size % replicas:
        rounded = -(-batch_size // replicas) * replicas
        logging.info(
            "evaluate.batch_size %d -> %d, a multiple of %d replicas", batch_size, rounded, replicas
        )
        return rounded
    return batch_size


def run_on_checkpoints(
    run_once, *, model, model_dir, restore, checkpoint, step, until_step, checkpoint_timeout
):
    """Evaluates once (a given or restored model) or each new checkpoint until a step.

    Args:
      run_once: `fn(step, where) -> results` on the current weights of `model`.
      model: The built model.
      model_dir: The run's folder.
      restore: Restore `checkpoint` (default: newest in `model_dir`) first.
      checkpoint: See `restore_model`.
      step: Step of a given model.
      until_step: Continuous evaluation: wait for each new checkpoint of
        `model_dir` and evaluate it, until one reaches this step.
      checkpoint_timeout: Give up after waiting this long for a new one.

    Returns:
      The last results, or None if continuous evaluation saw no checkpoint.
    """
    if until_step is None:
        if restore:
            step = restore_model(model, checkpoint or model_dir)
        return run_once(step, f"step {step}" if step is not None else checkpoint)
    results = None
    for path in tf.train.checkpoints_iterator(model_dir, timeout=checkpoint_timeout):
        try:
            step = restore_model(model, path)
        except (FileNotFoundError, tf.errors.NotFoundError) as e:
            # Deleted by the trainer's max_to_keep before we got to it.
            logging.warning("Skipping %s: %s", path, e)
            continue
        results = run_once(step, f"step {step}")
        if step >= until_step:
            break
    return results


def write_results(results: dict, per_class, output_dir: str) -> None:
    """Writes the results JSON and, for a step, TensorBoard scalars into `output_dir`."""
    tf.io.gfile.makedirs(output_dir)
    step = results.get("step")
    name = "results.json" if step is None else f"results_step_{step}.json"
    report.write_json(os.path.join(output_dir, name), results, per_class)
    logging.info("Wrote %s", os.path.join(output_dir, name))
    if step is None:
        return
    writer = tf.summary.create_file_writer(output_dir)
    with writer.as_default():
        for key, value in results.items():
            if isinstance(value, float) and np.isfinite(value):
                summaries.scalar(f"metrics/{key}", value, step)
    writer.close()
