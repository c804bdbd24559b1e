"""TensorFlow Lite conversion of Panoptic-DeepLab, with or without the merge.

TFLite needs a fixed input shape, which also gives the merge the static size it
needs, so the whole pipeline (uint8 images -> network -> merge -> panoptic map)
converts for one `(batch, height, width)` with the builtin TFLite ops only
(the merge's loop and conditional become TFLite `WHILE` and `IF`); outputs
equal the Keras model's and the merge's (tested on a fast-regime model; the
strong regime only swaps separable for regular convolutions).

The network is frozen (`convert_variables_to_constants_v2`) before conversion:
given the Keras 3 model's variables, `TFLiteConverter` keeps the batch-norm
statistics that the folded inference path reads as resource variables, which
the interpreter leaves uninitialised (NaN outputs). Freezing first makes them
constants.

TFLite flattens the output dict: its signature `serving_default` names the
outputs `output_0`, `output_1`, ... in the order of `output_names(...)`
(sorted keys). `run_tflite` maps them back; it uses `tf.lite.Interpreter`,
which TensorFlow deprecates in favour of `ai_edge_litert`'s interpreter (same
flatbuffer, same signature runner).

`convert_to_tflite_int8` quantizes the network alone to full integer (int8
weights and activations, post-training, calibrated on a representative set of
images such as `representative_images` reads from validation records). Its
input stays float32 images and its outputs float32 (the first op quantizes, the
last ones dequantize), so the merge runs outside it in float32, as
`panoptic_merge.panoptic_merge` on the outputs: the merge's integer indices and
its argmax / distance comparisons have nothing to gain from int8.
"""

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from swiderrnet_tf import common
from swiderrnet_tf.data import tfrecord
from swiderrnet_tf.postprocess import panoptic_merge

_MERGE_KEYS = (
    common.PANOPTIC,
    common.SEMANTIC,
    common.INSTANCE,
    common.INSTANCE_SCORES,
    common.CENTER_POINTS,
    common.CENTER_SCORES,
)
_NETWORK_KEYS = (common.SEMANTIC_LOGITS, common.CENTER_HEATMAP, common.OFFSETS)


def output_names(with_merge: bool) -> tuple[str, ...]:
    """Output keys in the order of the TFLite model's `output_<i>`."""
    return tuple(sorted(_MERGE_KEYS if with_merge else _NETWORK_KEYS))


def convert_to_tflite(
    model, input_size, *, batch_size: int = 1, merge_settings: dict | None = None
) -> bytes:
    """Converts the network, and the merge if `merge_settings` is given, to TFLite.

    Args:
      model: A Panoptic-DeepLab Keras model (TensorFlow backend).
      input_size: (height, width) of the images the TFLite model takes.
      batch_size: Images per call.
      merge_settings: Keyword arguments of `panoptic_merge.panoptic_merge`
        (`thing_classes`, `label_divisor`, `stuff_area_limit`, ...); None for
        the network alone.

    Returns:
      The TFLite flatbuffer. Input `images`: uint8 `[batch_size, height,
      width, 3]`; outputs: `output_names(merge_settings is not None)`.
    """
    height, width = (int(s) for s in input_size)

    def pipeline(images):
        outputs = model(tf.cast(images, tf.float32), training=False)
        if merge_settings is None:
            return {key: outputs[key] for key in _NETWORK_KEYS}
        merged = panoptic_merge.panoptic_merge(
            outputs[common.SEMANTIC_LOGITS],
            outputs[common.CENTER_HEATMAP],
            outputs[common.OFFSETS],
            **merge_settings,
        )
        return {key: merged[key] for key in _MERGE_KEYS}

    spec = tf.TensorSpec([batch_size, height, width, 3], tf.uint8, name="images")
    function = tf.function(pipeline, autograph=False).get_concrete_function(spec)
    frozen = convert_to_constants.convert_variables_to_constants_v2(function)
    # A trackable object makes the converter write a `serving_default` signature.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], tf.Module())
    return converter.convert()


def convert_to_tflite_int8(model, input_size, representative, *, batch_size: int = 1) -> bytes:
    """Full-integer post-training quantization of the network (no merge) to TFLite.

    Args:
      model: A Panoptic-DeepLab Keras model (TensorFlow backend), float32.
      input_size: (height, width) of the images the TFLite model takes.
      representative: Iterable of uint8 `[height, width, 3]` images that
        calibrate the activation ranges (a few dozen validation images).
      batch_size: Images per call.

    Returns:
      The TFLite flatbuffer. Input `images`: float32 `[batch_size, height,
      width, 3]` in 0..255; outputs: `output_names(False)`, float32.

    Raises:
      ValueError: If `representative` holds no image.
    """
    height, width = (int(s) for s in input_size)
    images = [np.asarray(image, np.float32) for image in representative]
    if not images:
        raise ValueError("convert_to_tflite_int8: the representative set holds no image")
    for image in images:
        if image.shape != (height, width, 3):
            raise ValueError(
                f"convert_to_tflite_int8: representative image of shape {image.shape}, "
                f"expected {(height, width, 3)}"
            )

    def network(images):
        outputs = model(images, training=False)
        return {key: outputs[key] for key in _NETWORK_KEYS}

    spec = tf.TensorSpec([batch_size, height, width, 3], tf.float32, name="images")
    function = tf.function(network, autograph=False).get_concrete_function(spec)
    frozen = convert_to_constants.convert_variables_to_constants_v2(function)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], tf.Module())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # Int8 kernels only: a conversion that would leave a float op fails instead.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    def batches():
        for start in range(0, len(images) - batch_size + 1, batch_size):
            yield [np.stack(images[start : start + batch_size])]

    converter.representative_dataset = batches
    return converter.convert()


def representative_images(file_pattern: str, input_size, count: int) -> list[np.ndarray]:
    """The first `count` images of the records `file_pattern`, cropped or padded.

    Args:
      file_pattern: Glob of TFRecord files (`data/tfrecord.py` format), e.g.
        the validation split.
      input_size: (height, width): centre crop or zero pad to it.
      count: Images to read.

    Returns:
      List of uint8 `[height, width, 3]` numpy images.

    Raises:
      FileNotFoundError: If nothing matches `file_pattern`.
    """
    files = sorted(tf.io.gfile.glob(file_pattern))
    if not files:
        raise FileNotFoundError(f"representative records: nothing matches {file_pattern!r}")
    height, width = (int(s) for s in input_size)
    dataset = tf.data.TFRecordDataset(files).take(count).map(tfrecord.decode_example)
    return [
        tf.image.resize_with_crop_or_pad(example["image"], height, width).numpy()
        for example in dataset
    ]


def run_tflite(
    model_content: bytes, images: np.ndarray, with_merge: bool, *, num_threads: int | None = None
) -> dict:
    """Runs a flatbuffer of `convert_to_tflite` (or `_int8`) with TensorFlow's interpreter.

    Args:
      model_content: The flatbuffer.
      images: `[batch, height, width, 3]` of the converted shape (uint8, or
        values 0..255 for an int8 model, which takes float32).
      with_merge: Whether it was converted with the merge.
      num_threads: Interpreter (XNNPACK) threads; None: TFLite's default.

    Returns:
      Dict of numpy outputs by key.
    """
    interpreter = tf.lite.Interpreter(model_content=model_content, num_threads=num_threads)
    runner = interpreter.get_signature_runner()
    dtype = runner.get_input_details()["images"]["dtype"]
    outputs = runner(images=np.asarray(images, dtype))
    names = output_names(with_merge)
    return {names[i]: outputs[f"output_{i}"] for i in range(len(names))}
