"""SWideRNet backbones in Panoptic-DeepLab, written in Keras 3.

    import swiderrnet_tf

    model = swiderrnet_tf.create_model("swidernet_0.25_0.25_0.75", dataset="cityscapes")
    predictor = swiderrnet_tf.Predictor.load("runs/demo")
    prediction = predictor.predict("photo.jpg")

The public API (imported on first use, so `import swiderrnet_tf` stays light):
  * `create_model(name, dataset=..., regime=...)`, `list_models(pattern)`:
    Panoptic-DeepLab with a named SWideRNet (`models`);
  * `Predictor`, `Prediction`, `Segment`: panoptic, semantic and instance
    maps from a run folder, a SavedModel or an imported deeplab2 model
    (`inference.predictor`);
  * `DatasetInfo`, `get_dataset_info(name)`, `list_datasets()`: the facts of
    a dataset, including its merge settings (`data.dataset_info`).

A map of the package:
  * `backbones/`, `layers/`, `meta_arch/`: the model (SWideRNet, its modules,
    Panoptic-DeepLab and the ImageNet classifier), in `keras.ops`;
  * `postprocess/`: the Panoptic-DeepLab merge, in `keras.ops`;
  * `data/`: datasets, converters, the input pipeline, built-in synthetic sets;
  * `losses/`, `training/`: the losses and the trainer;
  * `evaluation/`: PQ, mIoU, AP, and the evaluation loops;
  * `inference/`: the `Predictor`, checkpoint restoring, multi-scale
    inference, export (SavedModel, TFLite), latency, output files;
  * `search/`, `tools/`: the grid search, model counts, deeplab2 import;
  * `gin_configs/`: the paper's recipes and the demos;
  * `train`, `evaluate`, `export`, `predict`, `grid_search`, `data.convert`:
    the commands (`python -m swiderrnet_tf.train` or `swiderrnet-train`).
"""

import importlib

__version__ = "0.1.0"

# Public name -> module that defines it.
_PUBLIC = {
    "create_model": "swiderrnet_tf.models",
    "list_models": "swiderrnet_tf.models",
    "Predictor": "swiderrnet_tf.inference.predictor",
    "Prediction": "swiderrnet_tf.inference.predictor",
    "Segment": "swiderrnet_tf.inference.predictor",
    "DatasetInfo": "swiderrnet_tf.data.dataset_info",
    "get_dataset_info": "swiderrnet_tf.data.dataset_info",
    "list_datasets": "swiderrnet_tf.data.dataset_info",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'swiderrnet_tf' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC))
