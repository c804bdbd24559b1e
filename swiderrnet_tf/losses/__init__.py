"""Training losses of Panoptic-DeepLab (`panoptic_losses`), written in `keras.ops`."""
