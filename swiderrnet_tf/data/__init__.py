"""Datasets: registry, TFRecord codec, converters, synthetic data and pipelines."""
