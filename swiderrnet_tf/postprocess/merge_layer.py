"""Keras layer around the Panoptic-DeepLab merge, for models that end in panoptic maps.

Wraps `panoptic_merge.panoptic_merge` (Panoptic-DeepLab, Cheng et al. 2020,
Sec. 3.2, as used by SWideRNet) so that an exported model can take images and
return panoptic, semantic and instance maps. It has no weights; its settings
round-trip through `get_config`.

Deliberate deviation from deeplab2's `PostProcessor` layer:
  1. On the TensorFlow backend the merge runs as its own XLA cluster
     (`jit_compile=True`, the default), whatever the surrounding model does: on
     CPU the compiled merge is about 5x faster than TensorFlow's kernels, while
     XLA slows the network itself down there. Under JAX the caller's `jax.jit`
     compiles it anyway.
"""

import keras

from swiderrnet_tf import common
from swiderrnet_tf.postprocess import merge_defaults
from swiderrnet_tf.postprocess import panoptic_merge


@keras.saving.register_keras_serializable(package="swiderrnet_tf")
class PanopticMerge(keras.layers.Layer):
    """Merges a Panoptic-DeepLab output dict into panoptic, semantic and instance maps.

    Call it on a dict holding `common.SEMANTIC_LOGITS` `[batch, height, width,
    num_classes]`, `common.CENTER_HEATMAP` `[batch, height, width, 1]` and
    `common.OFFSETS` `[batch, height, width, 2]`; it returns the dict of
    `panoptic_merge.panoptic_merge`.
    """

    def __init__(
        self,
        thing_classes,
        label_divisor: int,
        stuff_area_limit: int,
        center_threshold: float = merge_defaults.CENTER_THRESHOLD,
        nms_kernel: int = merge_defaults.NMS_KERNEL,
        keep_k_centers: int = merge_defaults.KEEP_K_CENTERS,
        void_label: int = merge_defaults.VOID_LABEL,
        return_semantic_probabilities: bool = False,
        jit_compile: bool = True,
        **kwargs,
    ):
        """Stores the merge settings.

        Args:
          thing_classes: Model classes that have instances.
          label_divisor: Panoptic id = class * label_divisor + instance id.
          stuff_area_limit: Stuff segments with fewer pixels become void.
          center_threshold: Heatmap values at or below it are not centers.
          nms_kernel: Odd NMS window size.
          keep_k_centers: At most this many centers per image.
          void_label: Void class.
          return_semantic_probabilities: Also return the softmax.
          jit_compile: On TensorFlow, compile the merge with XLA.
          **kwargs: Passed to `keras.layers.Layer`.
        """
        # float32 even under a mixed-precision policy: logits rounded to float16
        # would change argmaxes and distances.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.thing_classes = tuple(int(c) for c in thing_classes)
        self.label_divisor = int(label_divisor)
        self.stuff_area_limit = int(stuff_area_limit)
        self.center_threshold = float(center_threshold)
        self.nms_kernel = int(nms_kernel)
        self.keep_k_centers = int(keep_k_centers)
        self.void_label = int(void_label)
        self.return_semantic_probabilities = bool(return_semantic_probabilities)
        self.jit_compile = bool(jit_compile)
        panoptic_merge.check_merge_settings(**self._merge_settings(with_outputs=False))
        self._compiled_merge = None

    @classmethod
    def from_dataset_info(cls, info, **kwargs) -> "PanopticMerge":
        """Builds the layer with a dataset's merge settings (`DatasetInfo.merge_settings`).

        Args:
          info: A `swiderrnet_tf.data.dataset_info.DatasetInfo`.
          **kwargs: Other constructor arguments, or settings that replace the
            dataset's (e.g. `nms_kernel`).
        """
        return cls(**{**info.merge_settings(), **kwargs})

    def _merge_settings(self, with_outputs=True) -> dict:
        settings = dict(
            thing_classes=self.thing_classes,
            label_divisor=self.label_divisor,
            stuff_area_limit=self.stuff_area_limit,
            center_threshold=self.center_threshold,
            nms_kernel=self.nms_kernel,
            keep_k_centers=self.keep_k_centers,
            void_label=self.void_label,
        )
        if with_outputs:
            settings["return_semantic_probabilities"] = self.return_semantic_probabilities
        return settings

    def _merge(self, semantic_logits, center_heatmap, offsets):
        return panoptic_merge.panoptic_merge(
            semantic_logits, center_heatmap, offsets, **self._merge_settings()
        )

    def call(self, outputs):
        missing = [
            key
            for key in (common.SEMANTIC_LOGITS, common.CENTER_HEATMAP, common.OFFSETS)
            if key not in outputs
        ]
        if missing:
            raise ValueError(
                f"{self.name}: the model outputs lack {missing}; got keys {sorted(outputs)}"
            )
        inputs = (
            outputs[common.SEMANTIC_LOGITS],
            outputs[common.CENTER_HEATMAP],
            outputs[common.OFFSETS],
        )
        if self.jit_compile and keras.backend.backend() == "tensorflow":
            if self._compiled_merge is None:
                import tensorflow as tf  # only on this backend

                self._compiled_merge = tf.function(self._merge, jit_compile=True)
            return self._compiled_merge(*inputs)
        return self._merge(*inputs)

    def compute_output_spec(self, outputs):
        logits = outputs[common.SEMANTIC_LOGITS]
        batch, height, width, num_classes = logits.shape
        k = self.keep_k_centers
        spec = {
            common.PANOPTIC: keras.KerasTensor((batch, height, width), "int32"),
            common.SEMANTIC: keras.KerasTensor((batch, height, width), "int32"),
            common.INSTANCE: keras.KerasTensor((batch, height, width), "int32"),
            common.INSTANCE_SCORES: keras.KerasTensor((batch, height, width), "float32"),
            common.CENTER_POINTS: keras.KerasTensor((batch, k, 2), "int32"),
            common.CENTER_SCORES: keras.KerasTensor((batch, k), "float32"),
        }
        if self.return_semantic_probabilities:
            spec[common.SEMANTIC_PROBABILITIES] = keras.KerasTensor(
                (batch, height, width, num_classes), "float32"
            )
        return spec

    def get_config(self):
        config = super().get_config()
        config.update(self._merge_settings())
        config["thing_classes"] = list(self.thing_classes)
        config["jit_compile"] = self.jit_compile
        return config
