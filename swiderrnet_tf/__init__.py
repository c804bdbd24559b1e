"""SWideRNet backbones in Panoptic-DeepLab, written in Keras 3.

Importing the package has no side effects beyond registering names; heavy modules
(TensorFlow data pipelines, the trainer) are imported where they are used.
"""

__version__ = "0.1.0"
