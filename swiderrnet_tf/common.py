"""Keys shared by the model, the data pipeline, the losses and the evaluators.

Every dictionary that crosses a module boundary uses these keys, so a typo is a
NameError and not a silent KeyError at the end of a long run.
"""

# Backbone endpoints (activated features, deeplab2 naming). Stride 4, 8, 16 and
# 16 or 32 (the output stride) respectively.
RES2 = "res2"
RES3 = "res3"
RES4 = "res4"
RES5 = "res5"
BACKBONE_ENDPOINTS = (RES2, RES3, RES4, RES5)
# Classification logits of the optional ImageNet head.
CLASSIFICATION_LOGITS = "classification_logits"

# Model outputs, at input resolution.
SEMANTIC_LOGITS = "semantic_logits"  # [batch, height, width, num_classes]
CENTER_HEATMAP = "center_heatmap"  # [batch, height, width, 1]
OFFSETS = "offsets"  # [batch, height, width, 2]: (dy, dx) in input pixels

# Post-processing outputs.
PANOPTIC = "panoptic"  # [batch, height, width] int32, class * divisor + instance
SEMANTIC = "semantic"  # [batch, height, width] int32
INSTANCE = "instance"  # [batch, height, width] int32, 0 = no instance
SEMANTIC_PROBABILITIES = "semantic_probabilities"  # [batch, height, width, num_classes]
INSTANCE_SCORES = "instance_scores"  # [batch, height, width] float32
CENTER_POINTS = "center_points"  # [batch, k, 2] int32 (y, x)
CENTER_SCORES = "center_scores"  # [batch, k] float32, 0 for unused slots

# Input pipeline features (training targets and evaluation ground truth).
IMAGE = "image"  # [batch, height, width, 3] float32 in [0, 255]
LABEL = "label"  # [batch] int32 class id 0..num_classes-1 (classification)
IMAGE_NAME = "image_name"  # [batch] string
ORIGINAL_SIZE = "original_size"  # [batch, 2] int32 (height, width) before padding
SEMANTIC_LABEL = "semantic_label"  # [batch, height, width] int32
SEMANTIC_WEIGHTS = "semantic_weights"  # [batch, height, width] float32
CENTER_TARGET = "center_target"  # [batch, height, width] float32 heatmap
CENTER_WEIGHTS = "center_weights"  # [batch, height, width] float32
OFFSET_TARGET = "offset_target"  # [batch, height, width, 2] float32 (dy, dx)
OFFSET_WEIGHTS = "offset_weights"  # [batch, height, width] float32
PANOPTIC_LABEL = "panoptic_label"  # [batch, height, width] int32 ground truth
CROWD_MASK = "crowd_mask"  # [batch, height, width] bool/int32, 1 on crowd regions

# Loss names.
SEMANTIC_LOSS = "semantic_loss"
CENTER_LOSS = "center_loss"
OFFSET_LOSS = "offset_loss"
TOTAL_LOSS = "total_loss"
