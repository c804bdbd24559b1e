"""Metrics: panoptic quality, mean IoU, COCO instance AP, and their reports."""
