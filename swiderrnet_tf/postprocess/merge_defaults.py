"""The merge settings a dataset leaves unset: the one place their numbers stand.

A `DatasetInfo` carries every merge setting of its dataset (deeplab2's
evaluation settings for the built-in ones); these values fill the fields a
dataset of one's own leaves out, and are the defaults of
`panoptic_merge.panoptic_merge`, `merge_layer.PanopticMerge` and
`inference.canvas_merge.CanvasMerge`. deeplab2's defaults: center threshold
0.1, NMS window 7, void 255; the 200 center slots of Panoptic-DeepLab's
paper (deeplab2's evaluator keeps 400).
"""

CENTER_THRESHOLD = 0.1
NMS_KERNEL = 7
KEEP_K_CENTERS = 200
VOID_LABEL = 255
