"""Says which setting explains that a source's weights do not fit our model.

Two kinds of evidence:
  * the source's backbone settings, when a config says them: the
    `*_config.json` beside an imported weights file, or the `config.gin` /
    `operative_config.gin` of a run folder, read with gin's parser without
    binding anything (`backbone_config_from_gin`);
  * the weights themselves: blocks per stage (depth l), the channels of the
    stem and of each stage's first convolution (widths w1, w2), where
    squeeze-and-excitation and SAC weights are, and which decoders and heads
    have depthwise-separable convolutions (`structure`).

`explain` compares both with our model and returns one sentence per
difference, which the errors of `initialization` end with.
"""

import inspect
import re

from gin import config_parser

from swiderrnet_tf.backbones import registry
from swiderrnet_tf.backbones import swidernet

BACKBONE_KEYS = ("w1", "w2", "l", "layout", "squeeze_excite", "sac")
_OPTION_KEYS = ("layout", "squeeze_excite", "sac")
_NAME_ARGUMENTS = ("backbone", "name", "backbone_name")
_BLOCK = re.compile(r"^stage(\d+)_block(\d+)/")
_WIDTH_HINTS = {1: "w1", 2: "w2", 3: "w2", 4: "w2", 5: "w2"}
_DECODERS_AND_HEADS = (
    "semantic_decoder",
    "instance_decoder",
    "semantic_head",
    "center_head",
    "offset_head",
)


class _Unresolved:
    """A gin reference (`@fn()` or `%MACRO`) that was parsed, not evaluated."""

    def __init__(self, macro: str | None = None):
        self.macro = macro


class _Delegate(config_parser.ParserDelegate):
    def configurable_reference(self, scoped_configurable_name, evaluate):
        return _Unresolved()

    def macro(self, macro_name):
        return _Unresolved(macro_name)


def _setting(value):
    # Only strings and booleans are settings we compare; anything else reads as unknown.
    return value if isinstance(value, str | bool) else _Unresolved()


def _defaults() -> dict:
    parameters = inspect.signature(swidernet.SWideRNet.__init__).parameters
    return {key: parameters[key].default for key in _OPTION_KEYS}


def backbone_config_of(network) -> dict | None:
    """The `BACKBONE_KEYS` settings of a SWideRNet (None for another network)."""
    config = network.get_config() if hasattr(network, "get_config") else {}
    if not all(key in config for key in BACKBONE_KEYS):
        return None
    return {key: config[key] for key in BACKBONE_KEYS}


def backbone_config_from_gin(text: str) -> dict | None:
    """The backbone settings a run's gin config gives, or None if it cannot tell.

    The backbone is the one registered name (`swidernet_1_1_4.5`) bound to a
    `backbone` or `name` parameter; options come from bindings named like them
    (`create_backbone.layout`) or from dict values holding them
    (`build_panoptic_deeplab.backbone_options`); macros are followed. Options
    bound to two different values are left out; unbound ones take SWideRNet's
    defaults.
    """
    try:
        statements = list(config_parser.ConfigParser(text, _Delegate()))
    except (SyntaxError, ValueError):
        return None
    macros, bindings = {}, []
    for statement in statements:
        if not isinstance(statement, config_parser.BindingStatement):
            continue
        if statement.arg_name:
            bindings.append((statement.arg_name, statement.value))
        else:
            macros[statement.selector] = statement.value

    def resolve(value, depth=0):
        while isinstance(value, _Unresolved) and value.macro in macros and depth < 10:
            value, depth = macros[value.macro], depth + 1
        return value

    names, options = set(), {key: set() for key in _OPTION_KEYS}
    for argument, value in bindings:
        value = resolve(value)
        if argument in _NAME_ARGUMENTS and isinstance(value, str):
            try:
                registry.backbone_args(value)
                names.add(value)
            except ValueError:
                pass
        if argument in options:
            options[argument].add(_setting(value))
        if isinstance(value, dict):
            for key in options:
                if key in value:
                    options[key].add(_setting(resolve(value[key])))
    if len(names) != 1:
        return None
    config = {**_defaults(), **registry.backbone_args(names.pop())}
    for key, values in options.items():
        values = {v for v in values if not isinstance(v, _Unresolved)}
        if len(values) == 1:
            config[key] = values.pop()
        elif values:
            config.pop(key)
    return {key: config[key] for key in BACKBONE_KEYS if key in config}


def structure(shapes: dict) -> dict:
    """Facts about a network read off its weights' paths and shapes.

    Args:
      shapes: Variable path -> shape.

    Returns:
      A dict with `blocks` ({stage: count}), `stem` (stem channels or None),
      `widths` ({stage: output channels of its first convolution}),
      `squeeze_excite` (stages with SE weights), `sac` (whether SAC weights
      exist) and `separable` ({module: uses depthwise convolutions}).
    """
    blocks, widths, se_stages = {}, {}, set()
    for path, shape in shapes.items():
        match = _BLOCK.match(path)
        if not match:
            continue
        stage, block = int(match.group(1)), int(match.group(2))
        blocks[stage] = max(blocks.get(stage, 0), block)
        if block == 1 and path.endswith("/conv1_bn_act/conv/kernel"):
            widths[stage] = shape[-1]
        if "/squeeze_excite/" in path:
            se_stages.add(stage)
    stem = shapes.get("stem/conv/kernel")
    return {
        "blocks": blocks,
        "stem": stem[-1] if stem else None,
        "widths": widths,
        "squeeze_excite": sorted(se_stages),
        "sac": any("/switch/" in path for path in shapes),
        "separable": {
            module: any("depthwise" in p for p in shapes if p.startswith(module + "/"))
            for module in _DECODERS_AND_HEADS
            if any(p.startswith(module + "/") for p in shapes)
        },
    }


def _structure_differences(source: dict, ours: dict) -> list[str]:
    notes = []
    if source["blocks"] and ours["blocks"] and source["blocks"] != ours["blocks"]:
        notes.append(
            f"blocks per stage {source['blocks']} in the source, {ours['blocks']} here "
            "(another depth multiplier l)"
        )
    if source["stem"] and ours["stem"] and source["stem"] != ours["stem"]:
        notes.append(f"stem of {source['stem']} channels in the source, {ours['stem']} here (w1)")
    for stage in sorted(set(source["widths"]) & set(ours["widths"])):
        a, b = source["widths"][stage], ours["widths"][stage]
        if a != b:
            notes.append(
                f"stage {stage} starts with {a} channels in the source, {b} here "
                f"(another width {_WIDTH_HINTS.get(stage, 'w2')})"
            )
    if source["blocks"] and ours["blocks"]:
        if source["squeeze_excite"] != ours["squeeze_excite"]:
            notes.append(
                f"squeeze-and-excitation in stages {source['squeeze_excite']} of the source, "
                f"{ours['squeeze_excite']} here (squeeze_excite; stage 1 has it only in the "
                "deeplab2 layout)"
            )
        if source["sac"] != ours["sac"]:
            where = ("in the source, not here", "here, not in the source")[ours["sac"]]
            notes.append(f"Switchable Atrous Convolution weights {where} (sac)")
    for module in sorted(set(source["separable"]) & set(ours["separable"])):
        if source["separable"][module] != ours["separable"][module]:
            kind = {True: "depthwise-separable", False: "regular"}
            notes.append(
                f"{module}: {kind[source['separable'][module]]} convolutions in the source, "
                f"{kind[ours['separable'][module]]} here (regime 'fast' or 'strong', "
                "or its *_conv_type)"
            )
    return notes


def config_differences(source: dict | None, origin: str | None, ours: dict | None) -> list[str]:
    """One sentence per backbone setting that differs between two configs."""
    if not source or not ours:
        return []
    return [
        f"{key}={source[key]!r} in the source ({origin}), {ours[key]!r} here"
        for key in BACKBONE_KEYS
        if key in source and key in ours and source[key] != ours[key]
    ]


def explain(source, target_shapes: dict, target_config: dict | None) -> list[str]:
    """Sentences naming the settings in which `source` and our model differ.

    Args:
      source: An `init_sources.Source`.
      target_shapes: Our variable path -> shape.
      target_config: Our backbone's `BACKBONE_KEYS` settings, if known.
    """
    notes = config_differences(source.config, source.config_origin, target_config)
    return notes + _structure_differences(structure(source.shapes), structure(target_shapes))
