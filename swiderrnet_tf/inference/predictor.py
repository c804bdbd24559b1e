"""`Predictor`: panoptic, semantic and instance maps of images, from any trained model.

    predictor = swiderrnet_tf.Predictor.load("runs/demo")
    prediction = predictor.predict("photo.jpg")
    prediction.panoptic, prediction.semantic, prediction.instance, prediction.segments

`Predictor.load(path)` takes a run folder of `swiderrnet_tf.train` (its
newest checkpoint and its `config.gin`), a SavedModel written by
`swiderrnet_tf.export`, or a folder written by `tools.import_deeplab2` (with
`dataset=`); `Predictor.from_model(model, dataset)` wraps a Keras model in
memory (e.g. from `swiderrnet_tf.create_model`). `predict` takes a file path,
a PIL image or an array `[height, width, 3]` (uint8, or floats in [0, 255]),
or a batch of them (a list, or an array `[batch, height, width, 3]`), and
returns one `Prediction` per image at the image's own size.

A run folder and an imported model run the network as a `tf.function` (each
new image size traces it once) and then the Panoptic-DeepLab merge with the
dataset's settings (`DatasetInfo.merge_settings`) and those of the run's
`panoptic_predictor` bindings, over several scales if the run evaluates so.
A SavedModel runs its own signature; an image larger than its merge canvases
is predicted at the largest size that fits and its maps are mapped back by
nearest neighbour.

Loading a run folder parses its `config.gin` into gin's global config, as the
command-line programs do, replacing what was parsed before.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import logging

from swiderrnet_tf import common
from swiderrnet_tf.data import dataset_info as dataset_info_lib
from swiderrnet_tf.inference import checkpoints
from swiderrnet_tf.inference import export_lib
from swiderrnet_tf.inference import images as images_lib
from swiderrnet_tf.inference import panoptic_predictor
from swiderrnet_tf.inference import precision as precision_lib
from swiderrnet_tf.inference import run_config

_MAPS = (common.PANOPTIC, common.SEMANTIC, common.INSTANCE)
_OUTPUTS = (*_MAPS, common.INSTANCE_SCORES, common.SEMANTIC_PROBABILITIES)


@dataclasses.dataclass(frozen=True)
class Segment:
    """One segment of a panoptic map.

    Attributes:
      id: Its panoptic id, `label * label_divisor + instance` (instance 0 for stuff).
      label: The model class.
      category_id: The class's id in the dataset's panoptic JSON (`DatasetInfo.category_ids`).
      category: The class name.
      is_thing: Whether the class has instances.
      area: Pixels.
      score: Things: the instance's score (center score x mean class
        probability, as deeplab2 ranks instances); stuff: the mean probability
        of its class over its pixels.
    """

    id: int
    label: int
    category_id: int
    category: str
    is_thing: bool
    area: int
    score: float


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The prediction of one image; maps are `[height, width]` int32 at the image's size.

    Attributes:
      panoptic: `label * label_divisor + instance`; void pixels
        `ignore_label * label_divisor`.
      semantic: The model class of each pixel.
      instance: Instance id of each thing pixel (0: none).
      segments: The segments of `panoptic`, by increasing id (void left out).
    """

    panoptic: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    segments: list[Segment]


def segments_of(panoptic, instance_scores, probabilities, info) -> list[Segment]:
    """The segments of a `[h, w]` panoptic map, with their areas and scores.

    Args:
      panoptic: `[h, w]` panoptic ids.
      instance_scores: `[h, w]` score of each thing pixel's instance.
      probabilities: `[h, w, num_classes]` semantic probabilities.
      info: The `DatasetInfo`.

    Returns:
      `Segment`s by increasing panoptic id; void pixels make none.
    """
    flat = np.asarray(panoptic, np.int64).reshape(-1)
    ids, inverse, areas = np.unique(flat, return_inverse=True, return_counts=True)
    labels = ids // info.label_divisor
    scores = np.asarray(instance_scores, np.float64).reshape(-1)
    thing_scores = np.zeros(len(ids))
    np.maximum.at(thing_scores, inverse, scores)
    probs = np.asarray(probabilities).reshape(flat.size, -1)
    valid = labels < info.num_classes
    pixel_class = np.where(valid, labels, 0)[inverse]
    class_probability = np.take_along_axis(probs, pixel_class[:, None], axis=1)[:, 0]
    stuff_scores = np.bincount(inverse, class_probability, len(ids)) / areas
    segments = []
    for i, segment_id in enumerate(ids):
        if not valid[i]:
            continue
        label = int(labels[i])
        thing = bool(info.is_thing[label])
        segments.append(
            Segment(
                id=int(segment_id),
                label=label,
                category_id=int(info.category_ids[label]),
                category=info.class_names[label],
                is_thing=thing,
                area=int(areas[i]),
                score=float(thing_scores[i] if thing else stuff_scores[i]),
            )
        )
    return segments


def _dataset(dataset) -> dataset_info_lib.DatasetInfo:
    if isinstance(dataset, dataset_info_lib.DatasetInfo):
        return dataset
    return dataset_info_lib.get_dataset_info(dataset)


def choose_signatures(metadata: dict, precision: str | None, allow_emulated: bool):
    """`(precision, {"images": name, "bytes": name})` to run a SavedModel with.

    A bfloat16 SavedModel also has float32 signatures of the same weights,
    used where `precision.resolve_precision` falls back to float32.

    Args:
      metadata: The SavedModel's metadata (`export_lib.read_metadata`).
      precision: Asked for; None for the SavedModel's own.
      allow_emulated: Keep bfloat16 where the hardware lacks it.

    Raises:
      ValueError: On an unknown precision, or one the SavedModel lacks.
    """
    requested = precision or metadata.get("precision", "float32")
    chosen = precision_lib.resolve_precision(requested, allow_emulated=allow_emulated)
    return chosen, export_lib.signatures_for(metadata, chosen)


class Predictor:
    """Runs a trained Panoptic-DeepLab on images (see the module docstring).

    Args:
      run: `run(images)`: uint8 `[1, h, w, 3]` -> dict of numpy arrays with
        `panoptic`, `semantic`, `instance` (`[1, h, w]`), `instance_scores`
        and `semantic_probabilities` (`[1, h, w, num_classes]`).
      info: The `DatasetInfo` of the model's classes.
      max_side: Largest image side `run` accepts (None: any); larger images
        are predicted at a reduced size and mapped back.
      source: What the predictor was loaded from, for messages.
    """

    def __init__(self, run, info, *, max_side: int | None = None, source: str = "a model"):
        self._run = run
        self.info = info
        self.max_side = max_side
        self.source = source

    @classmethod
    def load(
        cls,
        path: str,
        *,
        dataset=None,
        checkpoint: str | None = None,
        precision: str | None = None,
        allow_emulated_bfloat16: bool = False,
    ) -> "Predictor":
        """A predictor from a run folder, a SavedModel or an imported deeplab2 model.

        Args:
          path: A run folder of `swiderrnet_tf.train` (with `config.gin`), a
            SavedModel folder of `swiderrnet_tf.export`, or an output folder
            of `tools.import_deeplab2`.
          dataset: The dataset (name or `DatasetInfo`) of an imported model.
          checkpoint: A run folder's checkpoint (default: its newest).
          precision: The network's precision, `float32` or `bfloat16`
            (default: a SavedModel's own, else float32). bfloat16 falls back
            to float32 with a warning where the hardware lacks it
            (`precision.resolve_precision`).
          allow_emulated_bfloat16: Keep bfloat16 on such hardware.

        Raises:
          ValueError: When `path` is none of these, naming what was looked for,
            or on a precision the model cannot run in.
        """
        path = os.fspath(path)
        if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
            return cls.from_saved_model(
                path, precision=precision, allow_emulated_bfloat16=allow_emulated_bfloat16
            )
        chosen = precision_lib.resolve_precision(
            precision or "float32", allow_emulated=allow_emulated_bfloat16
        )
        if tf.io.gfile.exists(os.path.join(path, "model_config.json")):
            if dataset is None:
                raise ValueError(
                    f"{path} is an imported deeplab2 model: give its dataset, e.g. "
                    "Predictor.load(path, dataset='cityscapes')"
                )
            with precision_lib.policy_scope(chosen):
                return cls.from_deeplab2(path, dataset=dataset)
        if tf.io.gfile.exists(os.path.join(path, "config.gin")):
            with precision_lib.policy_scope(chosen):
                return cls.from_run(path, checkpoint=checkpoint)
        raise ValueError(
            f"{path}: not a run folder (config.gin), a SavedModel (saved_model.pb) or an "
            "imported deeplab2 model (model_config.json)"
        )

    @classmethod
    def from_model(cls, model, dataset, *, source: str = "a Keras model", **settings):
        """A predictor of a Panoptic-DeepLab Keras model in memory.

        Args:
          model: The model (e.g. `create_model(...)` with trained weights).
          dataset: Its dataset: a registered name or a `DatasetInfo`.
          source: What the model is, for messages.
          **settings: Merge settings replacing the dataset's
            (`center_threshold`, `nms_kernel`, `keep_k_centers`).
        """
        info = _dataset(dataset)
        predict = panoptic_predictor.panoptic_predictor(
            model,
            info,
            predict_fn_factory=panoptic_predictor.single_scale_predict_fn,
            center_threshold=settings.pop("center_threshold", None),
            nms_kernel=settings.pop("nms_kernel", None),
            keep_k_centers=settings.pop("keep_k_centers", None),
            output_keys=_OUTPUTS,
        )
        if settings:
            raise ValueError(f"unknown merge setting(s) {sorted(settings)}")
        return cls(_compiled(predict), info, source=source)

    @classmethod
    def from_run(cls, run_dir: str, *, checkpoint: str | None = None, gin_bindings=()):
        """A predictor of a training run: its `config.gin` and a checkpoint.

        Args:
          run_dir: The run folder (`--model_dir` of the training).
          checkpoint: A checkpoint prefix or `.weights.h5` file (default: the
            newest complete checkpoint of `run_dir`).
          gin_bindings: Bindings applied after the run's config, e.g.
            `panoptic_predictor.nms_kernel = 13`.
        """
        run_dir = os.fspath(run_dir)
        run_config.parse([run_config.run_config_file(run_dir)], gin_bindings)
        model_fn, dataset_name = run_config.model_and_dataset()
        info = _dataset(dataset_name)
        model = model_fn(num_classes=info.num_classes)
        step = checkpoints.restore_model(model, checkpoint or run_dir)
        logging.info("Predictor of %s at step %s", run_dir, step)
        # The gin call: the run's panoptic_predictor bindings (merge, scales) apply.
        predict = panoptic_predictor.panoptic_predictor(model, info, output_keys=_OUTPUTS)
        return cls(_compiled(predict), info, source=run_dir)

    @classmethod
    def from_saved_model(
        cls, path: str, *, precision: str | None = None, allow_emulated_bfloat16: bool = False
    ) -> "Predictor":
        """A predictor of a SavedModel written by `swiderrnet_tf.export`.

        Args:
          path: The SavedModel folder.
          precision, allow_emulated_bfloat16: Pick the signatures, see
            `choose_signatures`.
        """
        path = os.fspath(path)
        metadata = export_lib.read_metadata(path)
        try:
            chosen, signatures = choose_signatures(metadata, precision, allow_emulated_bfloat16)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
        try:
            loaded = tf.saved_model.load(path)
        except (OSError, tf.errors.OpError) as e:
            raise ValueError(f"{path}: cannot load the SavedModel: {e}") from e
        serve = loaded.signatures[signatures["images"]]
        logging.info("Network in %s (signature %s)", chosen, signatures["images"])

        def run(images):
            outputs = serve(images=tf.constant(images))
            return {key: outputs[key].numpy() for key in _OUTPUTS}

        # Keeps the loaded object (and its variables) alive with the signature.
        run.loaded = loaded
        info = export_lib.dataset_info_from_metadata(metadata)
        return cls(run, info, max_side=max(metadata["canvas_sides"]), source=path)

    @classmethod
    def from_deeplab2(cls, directory: str, *, dataset) -> "Predictor":
        """A predictor of a model imported by `tools.import_deeplab2` (`--output` folder).

        Args:
          directory: The folder holding `model_config.json` and `model.weights.h5`.
          dataset: The model's dataset: a registered name or a `DatasetInfo`
            with as many classes as the model predicts.
        """
        from swiderrnet_tf.tools import import_deeplab2

        info = _dataset(dataset)
        model = import_deeplab2.load_imported(os.fspath(directory))
        classes = export_lib.output_classes(model)
        if classes != info.num_classes:
            raise ValueError(
                f"{directory}: the model predicts {classes} classes but dataset "
                f"{info.name!r} has {info.num_classes}"
            )
        return cls.from_model(model, info, source=os.fspath(directory))

    def predict(self, image_or_batch):
        """Predicts one image or a batch.

        Args:
          image_or_batch: A file path, a PIL image or an array `[h, w, 3]`
            (one image); or a list of those, or an array `[n, h, w, 3]` (a
            batch; the images of a list may differ in size).

        Returns:
          A `Prediction` for one image; a list of them for a batch.
        """
        if isinstance(image_or_batch, list | tuple):
            return [self._predict_one(images_lib.as_rgb_array(x)) for x in image_or_batch]
        if isinstance(image_or_batch, str | os.PathLike):
            return self._predict_one(images_lib.read_image(image_or_batch))
        array = image_or_batch if hasattr(image_or_batch, "shape") else np.asarray(image_or_batch)
        if len(array.shape) == 4:
            return [self._predict_one(images_lib.as_rgb_array(x)) for x in array]
        return self._predict_one(images_lib.as_rgb_array(image_or_batch))

    def _predict_one(self, image: np.ndarray) -> Prediction:
        height, width = image.shape[:2]
        fitted = (height, width)
        if self.max_side is not None:
            fitted = images_lib.fitting_size(height, width, self.max_side)
        if fitted != (height, width):
            logging.info(
                "%dx%d is larger than the merge canvases of %s (%d); predicted at %dx%d",
                width,
                height,
                self.source,
                self.max_side,
                fitted[1],
                fitted[0],
            )
            image = images_lib.resize_bilinear(image, *fitted)
        outputs = {key: value[0] for key, value in self._run(image[None]).items()}
        if fitted != (height, width):
            outputs = {
                key: images_lib.resize_nearest(value, height, width)
                for key, value in outputs.items()
            }
        maps = {key: outputs[key].astype(np.int32) for key in _MAPS}
        return Prediction(
            **maps,
            segments=segments_of(
                maps[common.PANOPTIC],
                outputs[common.INSTANCE_SCORES],
                outputs[common.SEMANTIC_PROBABILITIES],
                self.info,
            ),
        )


def _compiled(predict):
    """`run(images)` of a merged predictor: uint8 in, numpy out, as a `tf.function`."""
    compiled = tf.function(lambda images: predict(tf.cast(images, tf.float32)), autograph=False)

    def run(images):
        return {key: value.numpy() for key, value in compiled(tf.constant(images)).items()}

    return run
