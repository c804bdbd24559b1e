"""TensorBoard scalars and images, written without the tensorboard package.

`tf.summary.scalar` and `tf.summary.image` live in the tensorboard package,
which the CPU TensorFlow wheel does not install. These write the same records
(`tf.summary.write` with the scalars / images plugin metadata, as TensorBoard's
summary_v2 does), so TensorBoard shows them as usual.
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin: str) -> summary_pb2.SummaryMetadata:
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin
    return metadata


def scalar(name: str, value: float, step: int) -> None:
    """Writes a float32 scalar into the default writer."""
    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=_metadata("scalars"))


def images(name: str, pictures: np.ndarray, step: int) -> None:
    """Writes `[k, height, width, 3]` uint8 images (PNG-encoded) into the default writer."""
    pictures = np.asarray(pictures, dtype=np.uint8)
    height, width = pictures.shape[1:3]
    encoded = [tf.io.encode_png(p) for p in pictures]
    tensor = tf.stack([tf.constant(str(width)), tf.constant(str(height)), *encoded])
    tf.summary.write(name, tensor, step=step, metadata=_metadata("images"))
