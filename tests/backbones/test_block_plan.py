"""Tests for the SWideRNet layout: depths, widths, strides, rates, endpoints."""

import pytest

from swiderrnet_tf.backbones import block_plan
from swiderrnet_tf.backbones import registry


@pytest.mark.parametrize(
    "l, depths",
    [  # DESIGN 1.1, int(n * l) with stage 1 fixed at 3.
        (0.35, (3, 1, 2, 1, 1)),
        (0.75, (3, 2, 4, 2, 2)),
        (1, (3, 3, 6, 3, 3)),
        (4, (3, 12, 24, 12, 12)),
        (4.5, (3, 13, 27, 13, 13)),
        (5.5, (3, 16, 33, 16, 16)),
    ],
)
def test_stage_depths(l, depths):
    assert block_plan.stage_depths(l) == depths


def test_wide_resnet41_has_41_layers():
    # Stem + 2 convs per basic block + 3 per bottleneck + the classifier.
    depths = block_plan.stage_depths(1)
    assert 1 + 2 * sum(depths[:4]) + 3 * depths[4] + 1 == 41


@pytest.mark.parametrize(
    "w2, widths",
    [  # DESIGN 1.1: b rounded before x4.
        (1, (256, 512, 1024, (512, 1024, 2048))),
        (0.35, (88, 180, 360, (179, 358, 716))),
        (0.25, (64, 128, 256, (128, 256, 512))),
    ],
)
def test_stage_filters(w2, widths):
    filters = block_plan.stage_filters(1, w2)
    assert filters[0] == (128, 128)
    assert tuple(f[0] for f in filters[1:4]) == widths[:3]
    assert filters[4] == widths[3]


def test_deeplab2_layout_strides_and_rates():
    plan = block_plan.make_plan(1, 1, 1, layout="deeplab2", output_stride=16)
    by_stage = {s: [b for b in plan.blocks if b.stage == s] for s in range(1, 6)}
    assert [b.strides for b in by_stage[1]] == [1, 1, 1]
    for stage in (2, 3, 4):
        assert [b.strides for b in by_stage[stage]][:2] == [2, 1]
    # Output stride 16: stage 5 does not stride; rate 1 in its first block, 2 after.
    assert [b.strides for b in by_stage[5]] == [1, 1, 1]
    assert [b.atrous_rate for b in by_stage[5]] == [1, 2, 2]
    assert all(b.switchable_atrous for b in by_stage[5])
    assert all(b.squeeze_excite for b in plan.blocks)
    assert not plan.max_pool
    assert plan.endpoints == {f"res{k}": f"stage{k}_block{len(by_stage[k])}" for k in (2, 3, 4, 5)}
    os32 = block_plan.make_plan(1, 1, 1, layout="deeplab2", output_stride=32)
    assert [b.strides for b in os32.blocks if b.stage == 5] == [2, 1, 1]
    assert [b.atrous_rate for b in os32.blocks if b.stage == 5] == [1, 1, 1]
    os8 = block_plan.make_plan(1, 1, 1, layout="deeplab2", output_stride=8)
    stage4 = [b for b in os8.blocks if b.stage == 4]
    assert [b.strides for b in stage4] == [1, 1, 1]
    assert [b.atrous_rate for b in stage4] == [1, 2, 2]
    assert stage4[0].second_atrous_rate == 2
    assert [b.atrous_rate for b in os8.blocks if b.stage == 5] == [2, 4, 4]


def test_paper_layout_strides_in_last_block():
    plan = block_plan.make_plan(1, 1, 1, layout="paper", output_stride=16)
    assert plan.max_pool
    by_stage = {s: [b for b in plan.blocks if b.stage == s] for s in range(1, 6)}
    assert [b.strides for b in by_stage[2]] == [1, 1, 2]
    assert [b.strides for b in by_stage[3]] == [1] * 5 + [2]
    # conv5's stride would go beyond 16: it runs at rate 1 and conv6 at rate 2.
    assert [b.strides for b in by_stage[4]] == [1, 1, 1]
    assert [b.atrous_rate for b in by_stage[5]] == [2, 2, 2]
    assert all(b.stride_in_second_conv for s in (2, 3, 4) for b in by_stage[s])
    # SE in conv3..conv6 only (Table 1).
    assert [b.squeeze_excite for b in plan.blocks] == [False] * 3 + [True] * 15
    assert plan.endpoints == {
        "res2": "stage2_block2",
        "res3": "stage3_block5",
        "res4": "stage4_block2",
        "res5": "stage5_block3",
    }
    mg = block_plan.make_plan(1, 1, 1, layout="paper", multi_grid=(1, 2, 4))
    assert [b.atrous_rate for b in mg.blocks if b.stage == 5] == [2, 4, 8]


def test_paper_layout_one_block_stage_endpoints():
    # l = 0.35: stages 2, 4, 5 have one block, so res2 is the max-pool output.
    plan = block_plan.make_plan(0.25, 0.35, 0.35, layout="paper")
    assert plan.endpoints["res2"] == block_plan.POOL
    assert plan.endpoints["res3"] == "stage3_block1"
    assert plan.endpoints["res4"] == "stage3_block2"


def test_drop_path_from_stride_4():
    plan = block_plan.make_plan(
        1, 1, 1, layout="deeplab2", drop_path_keep_prob=0.8, drop_path_schedule="linear"
    )
    keep = {b.name: b.drop_path_keep_prob for b in plan.blocks}
    # deeplab2: stride-2 blocks keep everything; stage 2's second block is at
    # stride 4 (stage 1 of 4: 0.95); stage 5 after its first block: 0.8.
    assert keep["stage1_block1"] == 1.0 and keep["stage2_block1"] == 1.0
    assert keep["stage2_block2"] == pytest.approx(0.95)
    assert keep["stage5_block2"] == pytest.approx(0.8)


def test_registry_spaces_and_names():
    assert len(registry.FAST_SPACE) == 45
    assert len(registry.STRONG_SPACE) == 21
    names = registry.list_backbones()
    assert "swidernet_0.25_0.75_1" in names and "swidernet_1_1_4.5" in names
    assert "wide_resnet41" in names
    assert len(names) == 45 + 21 - 1 + 1 + 1  # (1, 1, 1) is in both spaces
    assert registry.list_backbones("swidernet_1_2_*") == [
        f"swidernet_1_2_{l}" for l in ("1", "2", "3", "4", "5", "5.5", "6")
    ]
    assert registry.backbone_args("wide_resnet41") == {
        "w1": 1,
        "w2": 1,
        "l": 1,
        "squeeze_excite": False,
        "sac": False,
    }


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown backbone 'resnet50'"):
        registry.create_backbone("resnet50")
    with pytest.raises(ValueError, match=r"unknown backbone option\(s\) \['se'\]"):
        registry.create_backbone("swidernet_1_1_1", se=False)
    with pytest.raises(ValueError, match="output_stride must be one of"):
        block_plan.make_plan(1, 1, 1, output_stride=4)
    with pytest.raises(ValueError, match="leaves a stage without blocks"):
        block_plan.stage_depths(0.2)
