"""Inference: multi-scale prediction, SavedModel export, latency, COCO-format output.

`multi_scale` averages the network over scales and flips (keras.ops);
`serving` and `export_lib` build and write the SavedModel (TensorFlow);
`latency` times network, merge and end to end; `coco_format` and
`visualization` write predictions as panopticapi files and overlays.
"""
