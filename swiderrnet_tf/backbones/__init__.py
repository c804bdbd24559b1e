"""SWideRNet backbones and the registry of named variants."""

from swiderrnet_tf.backbones.registry import create_backbone
from swiderrnet_tf.backbones.registry import list_backbones
from swiderrnet_tf.backbones.swidernet import SWideRNet

__all__ = ["SWideRNet", "create_backbone", "list_backbones"]
