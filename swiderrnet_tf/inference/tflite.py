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
"""

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from swiderrnet_tf import common
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


def run_tflite(model_content: bytes, images: np.ndarray, with_merge: bool) -> dict:
    """Runs a flatbuffer of `convert_to_tflite` with TensorFlow's interpreter.

    Args:
      model_content: The flatbuffer.
      images: uint8 `[batch, height, width, 3]` of the converted shape.
      with_merge: Whether it was converted with the merge.

    Returns:
      Dict of numpy outputs by key.
    """
    interpreter = tf.lite.Interpreter(model_content=model_content)
    outputs = interpreter.get_signature_runner()(images=np.asarray(images, np.uint8))
    names = output_names(with_merge)
    return {names[i]: outputs[f"output_{i}"] for i in range(len(names))}
