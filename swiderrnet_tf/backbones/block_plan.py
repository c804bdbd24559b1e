"""The shape of SWideRNet-(w1, w2, l): stage depths, widths, strides and rates.

Shared by the model builder and anything that needs the layout without
building a model. Stage numbering follows deeplab2 (stage1..stage5 =
the paper's conv2..conv6).

Two layouts (DESIGN 1.3):
  * `paper` (Table 1): 3x3 max-pool (stride 2) after stage 1; the LAST block of
    stages 2-4 strides, in its second 3x3 convolution; squeeze-and-excitation
    in stages 2-5. Striding the second rather than the first convolution is
    not stated in the paper, but it is what its M-Adds count: it reproduces
    Tables 3 and 4 (e.g. 680.7 B for SWideRNet-(1, 1, 1) against 680.79 B;
    striding the first convolution gives 657.2 B).
  * `deeplab2` (the authors' released checkpoints): no max-pool; the FIRST block
    of stages 2-5 strides; squeeze-and-excitation, when on, in all five stages.

Below the output stride, strides become dilation: the convolution that would
stride keeps the current rate, and everything after it (in the deeplab2
layout including the second convolution of the same basic block) uses the
doubled rate.

Endpoints `res2..res5` are ReLU activations at strides 4, 8, 16 and the output
stride. In the deeplab2 layout `res_k` is the output of stage k. In the paper
layout, where stage k's last block leaves stride 2^k, `res_k` (k = 2, 3, 4) is the
last feature map at stride 2^k: the input of that block. This is how DeepLab
takes low-level features from ResNets that stride in the last unit of a block.
"""

import dataclasses
import math

import numpy as np

from swiderrnet_tf.layers import drop_path

LAYOUTS = ("paper", "deeplab2")
OUTPUT_STRIDES = (8, 16, 32)
BASE_DEPTHS = (3, 3, 6, 3, 3)
POOL = "stage1_pool"


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One residual block of the plan."""

    name: str
    stage: int
    kind: str  # "basic" or "bottleneck"
    filters: tuple[int, ...]
    strides: int
    stride_in_second_conv: bool
    atrous_rate: int
    second_atrous_rate: int
    squeeze_excite: bool
    switchable_atrous: bool
    drop_path_keep_prob: float


@dataclasses.dataclass(frozen=True)
class Plan:
    """A whole backbone: stem width, blocks in order, and where endpoints come from.

    `endpoints` maps `res2..res5` to the name of the block (or of the stage-1
    max-pool, `stage1_pool`) whose output is activated to form the endpoint.
    """

    stem_channels: int
    max_pool: bool
    blocks: tuple[BlockSpec, ...]
    endpoints: dict[str, str]


def stage_depths(l: float) -> tuple[int, ...]:
    """Blocks per stage: stage 1 is never scaled, the others get `int(n * l)`.

    The product is taken in float32 as deeplab2 does (e.g. l=0.35 -> [3,1,2,1,1]).
    """
    depths = (BASE_DEPTHS[0],) + tuple(int(np.float32(n) * np.float32(l)) for n in BASE_DEPTHS[1:])
    if min(depths) < 1:
        raise ValueError(f"layer multiplier l={l} leaves a stage without blocks: {depths}")
    return depths


def stage_filters(w1: float, w2: float) -> tuple[tuple[int, ...], ...]:
    """Channels of each stage's blocks.

    The base width `b = int(round(32 * s * w))` for stage strides s = 1, 2, 4, 8,
    16 is rounded before it is multiplied (stage 1 uses w1, the others w2).
    Basic blocks (stages 1-4) have `(4b, 4b)`, the stage-5 bottleneck `(b, 2b, 4b)`.
    """
    filters = []
    for stage, stride in enumerate((1, 2, 4, 8, 16), start=1):
        base = int(round(32 * stride * (w1 if stage == 1 else w2)))
        filters.append((4 * base, 4 * base) if stage < 5 else (base, 2 * base, 4 * base))
    return tuple(filters)


def _drop_path_keep(keep_prob: float, schedule: str, nominal_stride: int) -> float:
    # deeplab2's SWideRNet applies drop path from stride 4 on.
    if nominal_stride < 4:
        return 1.0
    stage = int(round(math.log2(nominal_stride))) - 1
    return drop_path.keep_prob_for_stage(keep_prob, schedule, stage)


def make_plan(
    w1: float,
    w2: float,
    l: float,
    *,
    layout: str = "paper",
    squeeze_excite: bool = True,
    sac: bool = True,
    multi_grid=None,
    output_stride: int = 16,
    drop_path_keep_prob: float = 1.0,
    drop_path_schedule: str = "constant",
) -> Plan:
    """Computes the block plan of SWideRNet-(w1, w2, l); see the module docstring."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
    if multi_grid is not None and (len(multi_grid) == 0 or min(multi_grid) < 1):
        raise ValueError(f"multi_grid must be a non-empty list of rates >= 1, got {multi_grid}")
    depths = stage_depths(l)
    filters = stage_filters(w1, w2)
    builder = _plan_paper if layout == "paper" else _plan_deeplab2
    blocks, endpoints = builder(
        depths,
        filters,
        squeeze_excite=squeeze_excite,
        sac=sac,
        multi_grid=tuple(multi_grid) if multi_grid else (1,),
        output_stride=output_stride,
        keep=lambda nominal: _drop_path_keep(drop_path_keep_prob, drop_path_schedule, nominal),
    )
    return Plan(
        stem_channels=int(round(64 * w1)),
        max_pool=layout == "paper",
        blocks=tuple(blocks),
        endpoints=endpoints,
    )


def _spec(stage, index, filters, **kwargs) -> BlockSpec:
    return BlockSpec(
        name=f"stage{stage}_block{index + 1}",
        stage=stage,
        kind="basic" if stage < 5 else "bottleneck",
        filters=filters,
        **kwargs,
    )


def _plan_deeplab2(depths, filters, *, squeeze_excite, sac, multi_grid, output_stride, keep):
    # deeplab2's BlockGroup bookkeeping: the stem strides by 2, then the first
    # block of stages 2-5 strides (or dilates beyond the output stride).
    blocks, endpoints = [], {}
    input_strides = (2, 2, 4, 8, 16)
    stage_strides = (1, 2, 2, 2, 2)
    for stage in range(1, 6):
        input_stride, stride = input_strides[stage - 1], stage_strides[stage - 1]
        current = input_stride
        for index in range(depths[stage - 1]):
            first = index == 0
            rate = current // output_stride if current > output_stride else 1
            if first and input_stride * stride > output_stride:
                second = input_stride * stride // output_stride
            else:
                second = rate
            if stage == 5:
                rate *= multi_grid[index % len(multi_grid)]
                second = rate
            blocks.append(
                _spec(
                    stage,
                    index,
                    filters[stage - 1],
                    strides=stride if first and input_stride < output_stride else 1,
                    stride_in_second_conv=False,
                    atrous_rate=rate,
                    second_atrous_rate=second,
                    squeeze_excite=squeeze_excite,
                    switchable_atrous=sac and stage == 5,
                    drop_path_keep_prob=keep(current),
                )
            )
            if first:
                current *= stride
        if stage >= 2:
            endpoints[f"res{stage}"] = blocks[-1].name
    return blocks, endpoints


def _plan_paper(depths, filters, *, squeeze_excite, sac, multi_grid, output_stride, keep):
    # Table 1: stem /2, stage 1 at /2, max-pool to /4, the last block of stages
    # 2-4 leaves /4, /8, /16; stage 5 (conv6) keeps its input stride.
    blocks, endpoints = [], {}
    actual, nominal, rate = 2, 2, 1
    for index in range(depths[0]):
        blocks.append(
            _spec(
                1,
                index,
                filters[0],
                strides=1,
                stride_in_second_conv=False,
                atrous_rate=1,
                second_atrous_rate=1,
                squeeze_excite=False,
                switchable_atrous=False,
                drop_path_keep_prob=keep(nominal),
            )
        )
    actual, nominal = 4, 4
    last_feature = POOL
    for stage in range(2, 6):
        depth = depths[stage - 1]
        for index in range(depth):
            downsamples = stage < 5 and index == depth - 1
            if downsamples:
                # The last feature map at this stride is this block's input.
                endpoints[f"res{stage}"] = last_feature
            block_keep = keep(nominal)
            # The block's second convolution strides, or below the output
            # stride runs at the current rate, after which the rate doubles.
            first_rate = second_rate = rate
            strides = 1
            if downsamples:
                if actual < output_stride:
                    strides = 2
                    actual *= 2
                else:
                    rate *= 2
                nominal *= 2
            if stage == 5:
                first_rate = second_rate = rate * multi_grid[index % len(multi_grid)]
            blocks.append(
                _spec(
                    stage,
                    index,
                    filters[stage - 1],
                    strides=strides,
                    stride_in_second_conv=stage < 5,
                    atrous_rate=first_rate,
                    second_atrous_rate=second_rate,
                    squeeze_excite=squeeze_excite,
                    switchable_atrous=sac and stage == 5,
                    drop_path_keep_prob=block_keep,
                )
            )
            last_feature = blocks[-1].name
    endpoints["res5"] = last_feature
    return blocks, endpoints
