"""Figures printed in the SWideRNet paper, for comparison tables.

Keys are `(registry name, regime, height, width)`; values are `(params in
millions, M-Adds in billions)` as printed (None where the paper prints none).
Tables 3 and 4 are COCO models (133 classes) at 641x641 in the paper layout;
Tables 5 and 12 the five fast picks on COCO and Cityscapes (19 classes).
"""

COCO = 133
CITYSCAPES = 19

# name, regime, num_classes, height, width -> (params M, M-Adds B, source)
REFERENCE = {
    ("wide_resnet41", "strong", COCO, 641, 641): (147.32, 655.66, "Table 3"),
    ("swidernet_1_1_1", "strong", COCO, 641, 641): (168.77, 680.79, "Tables 3, 4"),
    ("swidernet_1_1_1", "fast", COCO, 641, 641): (136.92, 499.16, "Table 3"),
    ("swidernet_1_1.5_1", "strong", COCO, 641, 641): (345.75, 1205.95, "Table 4"),
    ("swidernet_1_2_1", "strong", COCO, 641, 641): (587.35, 1925.75, "Table 4"),
    ("swidernet_1_1_2", "strong", COCO, 641, 641): (302.33, 1119.77, "Table 4"),
    ("swidernet_1_1_3", "strong", COCO, 641, 641): (435.90, 1558.75, "Table 4"),
    ("swidernet_1_1_4", "strong", COCO, 641, 641): (569.46, 1997.73, "Table 4"),
    ("swidernet_1_1_5", "strong", COCO, 641, 641): (703.03, 2436.71, "Table 4"),
    ("swidernet_1_1_5.5", "strong", COCO, 641, 641): (752.53, 2614.01, "Table 4"),
    ("swidernet_1_1_6", "strong", COCO, 641, 641): (836.59, 2875.69, "Table 4"),
    ("swidernet_1_1.5_2", "strong", COCO, 641, 641): (646.22, 2193.54, "Table 4"),
    ("swidernet_1_1.5_3", "strong", COCO, 641, 641): (946.69, 3181.12, "Table 4"),
    ("swidernet_1_1_3", "strong", COCO, 1025, 1025): (435.90, 3911.58, "Table 4"),
    ("swidernet_1_1_4", "strong", COCO, 1025, 1025): (569.46, 5019.62, "Table 4"),
    ("swidernet_0.25_0.25_0.75", "fast", COCO, 641, 641): (None, 31.67, "Table 5"),
    ("swidernet_0.25_0.35_0.75", "fast", COCO, 641, 641): (None, 47.13, "Table 5"),
    ("swidernet_0.25_0.35_1", "fast", COCO, 641, 641): (None, 64.98, "Table 5"),
    ("swidernet_0.25_0.5_1", "fast", COCO, 641, 641): (None, 116.37, "Table 5"),
    ("swidernet_0.25_0.75_1", "fast", COCO, 641, 641): (None, 240.59, "Table 5"),
    ("swidernet_0.25_0.25_0.75", "fast", CITYSCAPES, 1025, 2049): (None, 151.97, "Tables 5, 12"),
    ("swidernet_0.25_0.35_0.75", "fast", CITYSCAPES, 1025, 2049): (None, 229.49, "Tables 5, 12"),
    ("swidernet_0.25_0.35_1", "fast", CITYSCAPES, 1025, 2049): (None, 319.14, "Tables 5, 12"),
    ("swidernet_0.25_0.5_1", "fast", CITYSCAPES, 1025, 2049): (None, 576.83, "Tables 5, 12"),
    ("swidernet_0.25_0.75_1", "fast", CITYSCAPES, 1025, 2049): (None, 1199.85, "Tables 5, 12"),
}

# Table 5: end-to-end runtime (ms) of the fast picks, image in to panoptic
# result out, on a Tesla V100-SXM2, batch 1; and the val PQ.
# (name, num_classes, height, width) -> (runtime ms, PQ val)
RUNTIME_V100_MS = {
    ("swidernet_0.25_0.25_0.75", COCO, 641, 641): (30.01, 31.5),
    ("swidernet_0.25_0.35_0.75", COCO, 641, 641): (31.45, 34.3),
    ("swidernet_0.25_0.35_1", COCO, 641, 641): (35.96, 36.0),
    ("swidernet_0.25_0.5_1", COCO, 641, 641): (42.57, 38.1),
    ("swidernet_0.25_0.75_1", COCO, 641, 641): (56.66, 40.1),
    ("swidernet_0.25_0.25_0.75", CITYSCAPES, 1025, 2049): (63.05, 58.4),
    ("swidernet_0.25_0.35_0.75", CITYSCAPES, 1025, 2049): (73.14, 59.8),
    ("swidernet_0.25_0.35_1", CITYSCAPES, 1025, 2049): (83.25, 61.6),
    ("swidernet_0.25_0.5_1", CITYSCAPES, 1025, 2049): (108.58, 62.7),
    ("swidernet_0.25_0.75_1", CITYSCAPES, 1025, 2049): (166.83, 63.8),
}
