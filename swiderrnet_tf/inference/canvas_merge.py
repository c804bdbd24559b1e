"""The panoptic merge for images whose size is only known at run time (TensorFlow).

`swiderrnet_tf.postprocess.panoptic_merge` needs static height and width: its
arrays of pixel positions and per-slot tables are sized when it is traced, so
XLA compiles it once per size. A SavedModel that takes images of any size
therefore merges on a fixed set of canvases: each image batch goes to the
smallest canvas (height and width rounded up, each to the next of
`canvas_sides`), its outputs are padded to it, merged, and cropped back. The
number of compiled merges stays bounded (one per canvas and batch size)
however many image sizes a server sees.

Padding does not change the result. The padded pixels get one extra class,
`num_classes`, with logit 1 there and 0 for the real classes, and
`PAD_LOGIT` (-1e30) on the real pixels, where its softmax term is exactly 0.
That class is stuff, so the padded pixels join no instance, cast no vote and
add only to their own class's area; their heatmap is 0 (no center) and the
zero padding of the NMS window is what the unpadded merge sees at the image
border. Centers keep their `(y, x)`, and the row-major order of the real
pixels, which numbers centers and instances, is the same on the canvas.
Only the instance scores may differ in the last bit where the class sum is
reduced in another order (more than 64 classes).
"""

import tensorflow as tf

from swiderrnet_tf import common
from swiderrnet_tf.postprocess import merge_defaults
from swiderrnet_tf.postprocess import panoptic_merge

# Logit of the padding class on real pixels: exp(PAD_LOGIT - any real logit) == 0.
PAD_LOGIT = -1e30
# Per-axis canvas lengths of an exported model: images up to 2049 x 2049 on 9
# canvases (each costs about 3 s of export and 1 s of loading at 133 classes);
# 641 is COCO's and ADE20K's crop, 1025 x 2049 Cityscapes'.
DEFAULT_CANVAS_SIDES = (641, 1025, 2049)
# Outputs of the merge that are per-pixel maps, cropped back to the image.
_MAPS = (common.PANOPTIC, common.SEMANTIC, common.INSTANCE, common.INSTANCE_SCORES)


def check_canvas_sides(canvas_sides) -> tuple[int, ...]:
    """Sorted, de-duplicated canvas lengths.

    Raises:
      ValueError: If empty or not positive integers.
    """
    sides = tuple(sorted({int(s) for s in canvas_sides}))
    if not sides or sides[0] < 1 or any(int(s) != s for s in canvas_sides):
        raise ValueError(f"canvas_sides must be positive integers, got {canvas_sides!r}")
    return sides


def pad_to_canvas(semantic_logits, center_heatmap, offsets, canvas):
    """Pads outputs at the bottom and right to `canvas`, adding the padding class.

    Args:
      semantic_logits: `[b, h, w, c]` float32.
      center_heatmap: `[b, h, w, 1]` float32.
      offsets: `[b, h, w, 2]` float32.
      canvas: Static (height, width) >= (h, w).

    Returns:
      `[b, H, W, c + 1]` logits, `[b, H, W, 1]` heatmap and `[b, H, W, 2]`
      offsets with static H, W.
    """
    num_classes = semantic_logits.shape[-1]
    height, width = tf.shape(semantic_logits)[1], tf.shape(semantic_logits)[2]
    spatial = [[0, 0], [0, canvas[0] - height], [0, canvas[1] - width]]
    real = tf.pad(tf.ones_like(center_heatmap), spatial + [[0, 0]])  # [b, H, W, 1]
    logits = tf.concat(
        [
            tf.pad(semantic_logits, spatial + [[0, 0]]),
            tf.where(real > 0.0, PAD_LOGIT, 1.0),
        ],
        axis=-1,
    )
    heatmap = tf.pad(center_heatmap, spatial + [[0, 0]])
    offsets = tf.pad(offsets, spatial + [[0, 0]])
    return (
        tf.ensure_shape(logits, [None, canvas[0], canvas[1], num_classes + 1]),
        tf.ensure_shape(heatmap, [None, canvas[0], canvas[1], 1]),
        tf.ensure_shape(offsets, [None, canvas[0], canvas[1], 2]),
    )


class CanvasMerge(tf.Module):
    """Merges model outputs of any size on the smallest fitting canvas.

    Args:
      num_classes: Semantic classes of the model.
      canvas_sides: Per-axis canvas lengths.
      thing_classes, label_divisor, stuff_area_limit, center_threshold,
        nms_kernel, keep_k_centers, void_label: The merge settings (see
        `panoptic_merge.panoptic_merge`).
      jit_compile: Compile each canvas's merge with XLA.

    Raises:
      ValueError: On bad canvas sides or merge settings, or when the padding
        class `num_classes` would collide with `void_label`.
    """

    def __init__(
        self,
        num_classes: int,
        canvas_sides=DEFAULT_CANVAS_SIDES,
        *,
        thing_classes,
        label_divisor: int,
        stuff_area_limit: int,
        center_threshold: float = merge_defaults.CENTER_THRESHOLD,
        nms_kernel: int = merge_defaults.NMS_KERNEL,
        keep_k_centers: int = merge_defaults.KEEP_K_CENTERS,
        void_label: int = merge_defaults.VOID_LABEL,
        jit_compile: bool = True,
    ):
        super().__init__(name="canvas_merge")
        self.sides = check_canvas_sides(canvas_sides)
        self.num_classes = int(num_classes)
        self.settings = dict(
            thing_classes=tuple(int(c) for c in thing_classes),
            label_divisor=int(label_divisor),
            stuff_area_limit=int(stuff_area_limit),
            center_threshold=float(center_threshold),
            nms_kernel=int(nms_kernel),
            keep_k_centers=int(keep_k_centers),
            void_label=int(void_label),
        )
        # The padding class must be a valid class of the merge, distinct from void.
        panoptic_merge.check_merge_settings(num_classes=self.num_classes + 1, **self.settings)

        def merge(semantic_logits, center_heatmap, offsets):
            return panoptic_merge.panoptic_merge(
                semantic_logits, center_heatmap, offsets, **self.settings
            )

        self.jit_compile = bool(jit_compile)
        self._merge = tf.function(merge, jit_compile=jit_compile, autograph=False)

    @property
    def max_size(self) -> int:
        return self.sides[-1]

    def _merge_on(self, canvas, semantic_logits, center_heatmap, offsets):
        padded = pad_to_canvas(semantic_logits, center_heatmap, offsets, canvas)
        merged = self._merge(*padded)
        height, width = tf.shape(semantic_logits)[1], tf.shape(semantic_logits)[2]
        result = {key: merged[key][:, :height, :width] for key in _MAPS}
        result[common.CENTER_POINTS] = merged[common.CENTER_POINTS]
        result[common.CENTER_SCORES] = merged[common.CENTER_SCORES]
        return result

    def __call__(self, semantic_logits, center_heatmap, offsets) -> dict:
        """Merges `[b, h, w, ...]` outputs (h, w <= the largest side; unknown when traced).

        Returns:
          The dict of `panoptic_merge.panoptic_merge`, maps cropped to `[b, h, w]`.
        """
        sides = tf.constant(self.sides, tf.int32)
        height, width = tf.shape(semantic_logits)[1], tf.shape(semantic_logits)[2]
        # Index of the first side >= the length; callers assert it exists.
        row = tf.reduce_sum(tf.cast(sides < height, tf.int32))
        col = tf.reduce_sum(tf.cast(sides < width, tf.int32))
        count = len(self.sides)
        branches = [
            (lambda c=(h, w): self._merge_on(c, semantic_logits, center_heatmap, offsets))
            for h in self.sides
            for w in self.sides
        ]
        return tf.switch_case(
            tf.minimum(row, count - 1) * count + tf.minimum(col, count - 1), branches
        )
