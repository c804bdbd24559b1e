"""Panoptic-DeepLab on top of a SWideRNet backbone."""

from swiderrnet_tf.meta_arch.panoptic_deeplab import PanopticDeepLab
from swiderrnet_tf.meta_arch.panoptic_deeplab import build_panoptic_deeplab

__all__ = ["PanopticDeepLab", "build_panoptic_deeplab"]
