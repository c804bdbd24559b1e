"""Keras 3 layers of SWideRNet and Panoptic-DeepLab (keras.ops only)."""
