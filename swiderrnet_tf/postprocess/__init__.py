"""Post-processing: the Panoptic-DeepLab merge of semantic, center and offset outputs.

`panoptic_merge.panoptic_merge` is the pure function; `merge_layer.PanopticMerge`
wraps it as a serialisable Keras layer; `centers` finds centers and groups pixels;
`semantic_scores` computes the per-pixel argmax and class probabilities.
"""
