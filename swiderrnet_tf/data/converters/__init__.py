"""Dataset converters: panoptic JSON + PNG layouts to sharded deeplab2 TFRecords."""
