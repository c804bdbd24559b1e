"""What a run's gin config says inference needs: model, dataset, merge, scales.

The training recipe of a run (its gin files, or the `config.gin` the trainer
wrote into its folder) binds the model and the dataset on `evaluate`
(`evaluate.model_fn`, `evaluate.dataset_name`), the merge settings that
replace the dataset's and the multi-scale inference on `panoptic_predictor`.
`parse` reads such a recipe without the trainer (its names are skipped) and
`run_settings` collects those values, for export and for the `Predictor`.
"""

import os

import gin
import tensorflow as tf

from swiderrnet_tf import configurables  # noqa: F401  (registers gin names)
from swiderrnet_tf import gin_config
from swiderrnet_tf.inference import multi_scale
from swiderrnet_tf.inference import panoptic_predictor


def parse(gin_files, gin_bindings=()) -> list[str]:
    """Parses a training recipe for inference: the trainer's own names are skipped.

    Returns:
      The resolved gin file paths (see `gin_config.parse`).
    """
    return gin_config.parse(gin_files, gin_bindings, skip_unknown=gin_config.TRAINING_ONLY)


def run_config_file(run_dir: str) -> str:
    """The `config.gin` the trainer wrote into `run_dir`.

    Raises:
      FileNotFoundError: When the folder holds none.
    """
    path = os.path.join(run_dir, gin_config.CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{run_dir}: no {gin_config.CONFIG_FILE} here; is it a run folder of "
            "swiderrnet_tf.train?"
        )
    return path


def model_and_dataset():
    """`(model_fn, dataset_name)` bound on `evaluate` in the parsed config.

    Raises:
      ValueError: If `evaluate.model_fn` or `evaluate.dataset_name` is not bound.
    """
    evaluate = gin.get_bindings("evaluate")
    missing = [f"evaluate.{k}" for k in ("model_fn", "dataset_name") if evaluate.get(k) is None]
    if missing:
        raise ValueError(f"the gin config does not bind {missing}; give the training run's files")
    return evaluate["model_fn"], evaluate["dataset_name"]


def run_settings() -> dict:
    """What the parsed gin config says to run: model, dataset, merge, scales.

    Returns:
      Dict with `model_fn`, `dataset_name`, `merge` (the
      `panoptic_predictor` settings bound: center_threshold, nms_kernel,
      keep_k_centers; the dataset's for the others), `scales` and `flip`.

    Raises:
      ValueError: If `evaluate.model_fn` or `evaluate.dataset_name` is not
        bound, or the evaluation uses a predict_fn_factory other than
        `multi_scale_predict_fn`.
    """
    model_fn, dataset_name = model_and_dataset()
    predictor = gin.get_bindings("panoptic_predictor")
    merge = {name: predictor[name] for name in panoptic_predictor.SETTINGS if name in predictor}
    factory = predictor.get("predict_fn_factory")
    scales, flip = (1.0,), False
    if factory is multi_scale.multi_scale_predict_fn:
        bound = gin.get_bindings("multi_scale_predict_fn")
        scales = multi_scale.resolve_scales(bound.get("scales"), bound.get("dataset_name"))
        flip = bound.get("flip", True)
    elif factory not in (None, panoptic_predictor.single_scale_predict_fn):
        raise ValueError(
            f"panoptic_predictor.predict_fn_factory = {factory!r} cannot be exported; "
            "use @multi_scale_predict_fn or leave it unbound"
        )
    return {
        "model_fn": model_fn,
        "dataset_name": dataset_name,
        "merge": merge,
        "scales": scales,
        "flip": flip,
    }
