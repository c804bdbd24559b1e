"""Picks the tf.distribute strategy and answers where each process stands.

`create_strategy` chooses, in order:
  1. `TPUStrategy` when `--tpu` names a TPU (a name, a `grpc://` address, or
     `local` on a Cloud TPU VM);
  2. `MultiWorkerMirroredStrategy` when `TF_CONFIG` describes a cluster (one
     process per host; create it before TensorFlow runs any op);
  3. `MirroredStrategy` over the local GPUs when there are several;
  4. the default strategy otherwise (one GPU or the CPU).
"""

import json
import os

import tensorflow as tf
from absl import logging


def create_strategy(tpu: str | None = None) -> tf.distribute.Strategy:
    """Returns the strategy for this machine (see the module docstring)."""
    if tpu:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        if tpu != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        topology = tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
        logging.info("%s", describe_tpu_topology(topology, strategy.num_replicas_in_sync))
    elif _tf_config_cluster():
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif len(tf.config.list_logical_devices("GPU")) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    logging.info(
        "Strategy %s with %d replica(s) in sync",
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
    )
    return strategy


def describe_tpu_topology(topology, replicas: int) -> str:
    """One log line: hosts, TPU cores per host and in all, mesh, replicas.

    Args:
      topology: What `tf.tpu.experimental.initialize_tpu_system` returned (a
        `tf.tpu.experimental.Topology`).
      replicas: The strategy's replicas in sync.
    """
    hosts, per_host = topology.num_tasks, topology.num_tpus_per_task
    mesh = "x".join(str(int(d)) for d in topology.mesh_shape)
    return (
        f"TPU topology: {hosts} host(s) x {per_host} cores = {hosts * per_host} TPU cores "
        f"(mesh {mesh}), {replicas} replica(s)"
    )


def _tf_config_cluster() -> dict:
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e
    return config.get("cluster", {})


def _task(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not is_multi_worker(strategy):
        return None, 0
    return resolver.task_type, resolver.task_id or 0


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether the strategy spans several processes that each run this code."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    # No public accessor says whether the cluster has more than one worker.
    return strategy.extended._in_multi_worker_mode()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints, summaries and configs."""
    task_type, task_id = _task(strategy)
    if task_type is None or task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def task_name(strategy: tf.distribute.Strategy) -> str:
    """`worker_1` etc. for multi-worker runs, `chief` otherwise."""
    task_type, task_id = _task(strategy)
    return "chief" if task_type is None else f"{task_type}_{task_id}"


def per_replica_batch_size(global_batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """The global batch divided over the replicas.

    Raises:
      ValueError: If it does not divide evenly.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(
            f"the global batch size {global_batch_size} does not divide over "
            f"{replicas} replicas; use a multiple of {replicas}"
        )
    return global_batch_size // replicas


def make_barrier(strategy: tf.distribute.Strategy):
    """Returns `agree(flag: bool) -> bool`, True if any replica's flag is True.

    Every process must call it at the same point: it is a collective (a tiny
    all-reduce), so it also serves as a barrier between workers.
    """

    @tf.function
    def _any(flag):
        per_replica = strategy.run(lambda x: tf.identity(x), args=(flag,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def agree(flag: bool) -> bool:
        return bool(_any(tf.constant(1.0 if flag else 0.0)).numpy() > 0.0)

    return agree
