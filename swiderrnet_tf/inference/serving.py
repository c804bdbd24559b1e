"""The TensorFlow module a SavedModel serves: images or encoded bytes in, panoptic maps out.

Two signatures, both ending in the Panoptic-DeepLab merge:
  * `serving_default(images)`: uint8 `[batch, height, width, 3]` of any size;
  * `serving_bytes(image_bytes)`: a `[batch]` string tensor of JPEG, PNG, GIF
    or BMP files (TF Serving's REST API sends them as `{"b64": ...}`); the
    images of one call must share their size.

A SavedModel exported in bfloat16 (`precision` in its metadata) also has
`serving_float32` and `serving_bytes_float32`: the same weights, the network
in float32, for machines without bfloat16 hardware.

All return (`b` batch, `h`, `w` image size, `c` classes, `k` center slots):
  * `panoptic` `[b, h, w]` int32, `class * label_divisor + instance`, void
    pixels `ignore_label * label_divisor`;
  * `semantic` `[b, h, w]` int32; `instance` `[b, h, w]` int32 (0: none);
  * `instance_scores` `[b, h, w]` float32 (score of each thing pixel's instance);
  * `semantic_probabilities` `[b, h, w, c]` float32; `center_heatmap` `[b, h, w]`;
  * `center_points` `[b, k, 2]` int32 (y, x; -1 unused), `center_scores` `[b, k]`.

In Python (plain TensorFlow, no swiderrnet_tf needed):
  loaded = tf.saved_model.load("exported/coco_fast")
  outputs = loaded.signatures["serving_default"](images=tf.constant(uint8_batch))
With TF Serving's REST API:
  curl -d '{"signature_name": "serving_bytes", "instances": [{"b64": "<base64 JPEG>"}]}' \
      localhost:8501/v1/models/coco_fast:predict

Bad inputs fail with `InvalidArgumentError`s that say what is wrong: the rank
or channel count of `images`, an empty image, an image larger than the
largest merge canvas, an empty or unknown byte string (with its index), or
images of different sizes in one byte batch.
"""

import tensorflow as tf

from swiderrnet_tf import common
from swiderrnet_tf.inference import multi_scale
from swiderrnet_tf.inference import precision

IMAGES_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"
# A bfloat16 SavedModel also serves its network in float32 under these names,
# for machines without bfloat16 hardware (`precision.resolve_precision`).
FLOAT32_SIGNATURES = {"images": "serving_float32", "bytes": "serving_bytes_float32"}
OUTPUT_KEYS = (
    common.PANOPTIC,
    common.SEMANTIC,
    common.INSTANCE,
    common.INSTANCE_SCORES,
    common.SEMANTIC_PROBABILITIES,
    common.CENTER_HEATMAP,
    common.CENTER_POINTS,
    common.CENTER_SCORES,
)
# File signatures of the formats `tf.io.decode_image` reads.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def check_images(images):
    """Asserts a uint8 `[batch, height, width, 3]` batch that is not empty.

    Args:
      images: A uint8 tensor of any rank.

    Returns:
      `images` with static rank 4 and 3 channels, after the checks ran.
    """
    shape = tf.shape(images)
    is_4d = tf.equal(tf.size(shape), 4)
    # Padded so that reading four dimensions never fails, whatever the rank; each
    # assert below only fires when the ones before it pass.
    dims = tf.concat([shape, tf.zeros([4], tf.int32)], axis=0)[:4]
    checks = [
        tf.debugging.Assert(
            is_4d,
            ["images must be a 4-D uint8 tensor [batch, height, width, 3]; got shape", shape],
        ),
        tf.debugging.Assert(
            tf.logical_or(~is_4d, tf.equal(dims[3], 3)),
            ["images must have 3 (RGB) channels in their last axis; got shape", shape],
            summarize=4,
        ),
        tf.debugging.Assert(
            tf.logical_or(~is_4d, tf.reduce_all(dims[:3] > 0)),
            ["images must hold at least one image of at least 1x1 pixels; got shape", shape],
            summarize=4,
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.ensure_shape(tf.identity(images), [None, None, None, 3])


def decode_images(image_bytes):
    """Decodes a batch of encoded images of one size into uint8 RGB.

    Args:
      image_bytes: `[batch]` string tensor of JPEG, PNG, GIF (first frame) or
        BMP files; greyscale and RGBA images are converted to RGB.

    Returns:
      `[batch, height, width, 3]` uint8.
    """
    count = tf.shape(image_bytes)[0]
    nonempty = tf.debugging.Assert(
        count > 0, ["image_bytes must hold at least one encoded image; got none"]
    )
    with tf.control_dependencies([nonempty]):
        count = tf.identity(count)
    images = tf.TensorArray(tf.uint8, size=count, infer_shape=False, element_shape=[None, None, 3])
    sizes = tf.TensorArray(tf.int32, size=count, element_shape=[2])
    for i in tf.range(count):
        data = image_bytes[i]
        known = tf.reduce_any(
            [tf.equal(tf.strings.substr(data, 0, len(magic)), magic) for magic in _MAGIC]
        )
        checks = [
            tf.debugging.Assert(
                tf.strings.length(data) > 0, ["image_bytes[i] is empty for i =", i]
            ),
            tf.debugging.Assert(
                known,
                [
                    "image_bytes[i] is not a JPEG, PNG, GIF or BMP file for i =",
                    i,
                    "; it starts with",
                    tf.strings.substr(data, 0, 8),
                ],
            ),
        ]
        with tf.control_dependencies(checks):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
        images = images.write(i, image)
        sizes = sizes.write(i, tf.shape(image)[:2])
    sizes = sizes.stack()  # [batch, 2]
    same = tf.debugging.Assert(
        tf.reduce_all(tf.equal(sizes, sizes[:1])),
        [
            "the images of one call must have the same size; send others in another call. "
            "(height, width) per image:",
            sizes,
        ],
        summarize=64,
    )
    with tf.control_dependencies([same]):
        return images.stack()


class PanopticServingModule(tf.Module):
    """Network (optionally over several scales and flips), then the canvas merge.

    Args:
      model: The Panoptic-DeepLab Keras model (any input size).
      merge: A `canvas_merge.CanvasMerge` for the model's classes.
      scales: Input scales averaged by `multi_scale.multi_scale_outputs`.
      flip: Also average left-right flipped inputs.
      metadata_path: A JSON file saved as the `assets/` entry `metadata`.
    """

    def __init__(self, model, merge, *, scales=(1.0,), flip=False, metadata_path=None):
        super().__init__(name="panoptic_serving")
        self.model = model
        self.merge = merge
        self.scales = tuple(float(s) for s in scales)
        self.flip = bool(flip)
        if metadata_path is not None:
            self.metadata = tf.saved_model.Asset(metadata_path)
        self.serve_images = tf.function(
            self._serve_images,
            input_signature=[tf.TensorSpec(None, tf.uint8, name="images")],
        )
        self.serve_bytes = tf.function(
            self._serve_bytes,
            input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
        )

    def signatures(self) -> dict:
        """The signatures to save, by name, traced in the model's own precision."""
        return {
            IMAGES_SIGNATURE: self.serve_images.get_concrete_function(),
            BYTES_SIGNATURE: self.serve_bytes.get_concrete_function(),
        }

    def float32_signatures(self) -> dict:
        """`FLOAT32_SIGNATURES`, traced with the network in float32 (same variables).

        Call it only on a model built in bfloat16.
        """
        self.serve_images_float32 = tf.function(
            self._serve_images,
            input_signature=[tf.TensorSpec(None, tf.uint8, name="images")],
        )
        self.serve_bytes_float32 = tf.function(
            self._serve_bytes,
            input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
        )
        with precision.computing_in(self.model, "float32"):
            return {
                FLOAT32_SIGNATURES["images"]: self.serve_images_float32.get_concrete_function(),
                FLOAT32_SIGNATURES["bytes"]: self.serve_bytes_float32.get_concrete_function(),
            }

    def predict(self, images) -> dict:
        """uint8 `[b, h, w, 3]` images (checked) -> the output dict."""
        shape = tf.shape(images)
        fits = tf.debugging.Assert(
            tf.reduce_all(shape[1:3] <= self.merge.max_size),
            [
                f"images larger than {self.merge.max_size} pixels in height or width do not "
                "fit the merge canvases of this SavedModel (export it again with larger "
                "canvas sides); got shape",
                shape,
            ],
            summarize=4,
        )
        with tf.control_dependencies([fits]):
            images = tf.identity(images)
        outputs = multi_scale.multi_scale_outputs(
            lambda x: self.model(x, training=False), images, scales=self.scales, flip=self.flip
        )
        logits = tf.cast(outputs[common.SEMANTIC_LOGITS], tf.float32)
        heatmap = tf.cast(outputs[common.CENTER_HEATMAP], tf.float32)
        merged = self.merge(logits, heatmap, tf.cast(outputs[common.OFFSETS], tf.float32))
        result = {key: merged[key] for key in OUTPUT_KEYS if key in merged}
        result[common.SEMANTIC_PROBABILITIES] = tf.nn.softmax(logits, axis=-1)
        result[common.CENTER_HEATMAP] = heatmap[..., 0]
        return result

    def _serve_images(self, images):
        return self.predict(check_images(images))

    def _serve_bytes(self, image_bytes):
        return self.predict(check_images(decode_images(image_bytes)))
