"""Reads a deeplab2 `ExperimentOptions` text proto into our model arguments.

deeplab2 configures models with protobuf text files (`config.proto`,
`model.proto`). This module parses the text format without protobuf (nested
`name { ... }` blocks and `key: value` fields, repeated fields as lists) and
translates a Panoptic-DeepLab + SWideRNet config into the arguments of
`build_panoptic_deeplab`, applying deeplab2's defaults for absent fields.
"""

import re

# deeplab2 model.proto defaults.
_BACKBONE_DEFAULTS = {
    "name": "resnet50",
    "output_stride": 32,
    "use_squeeze_and_excite": False,
    "drop_path_keep_prob": 1.0,
    "drop_path_schedule": "constant",
    "stem_width_multiplier": 1.0,
    "backbone_width_multiplier": 1.0,
    "backbone_layer_multiplier": 1.0,
    "use_sac_beyond_stride": -1,
}
_CONV_TYPES = {"depthwise_separable_conv": "separable", "standard_conv": "standard"}
_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}:])|([^\s{}:"#]+))')


def _tokens(text: str):
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            if text[position:].strip():
                raise ValueError(f"cannot parse text proto near {text[position : position + 30]!r}")
            return
        position = match.end()
        comment, string, punct, word = match.groups()
        if comment is not None:
            continue
        if string is not None:
            yield ("value", bytes(string[1:-1], "utf-8").decode("unicode_escape"))
        elif punct is not None:
            yield (punct, punct)
        elif word is not None:
            yield ("word", word)


def _scalar(word: str):
    if word in ("true", "false"):
        return word == "true"
    for cast in (int, float):
        try:
            return cast(word)
        except ValueError:
            pass
    return word  # an enum name


def parse_text_proto(text: str) -> dict:
    """Parses proto text format into nested dicts; repeated fields become lists."""
    tokens = list(_tokens(text))
    position = 0

    def message(closing: bool) -> dict:
        nonlocal position
        fields: dict = {}
        while position < len(tokens):
            kind, value = tokens[position]
            if kind == "}":
                if not closing:
                    raise ValueError("unbalanced '}' in text proto")
                position += 1
                return fields
            if kind != "word":
                raise ValueError(f"expected a field name in text proto, got {value!r}")
            name = value
            position += 1
            if position < len(tokens) and tokens[position][0] == ":":
                position += 1
            kind, value = tokens[position]
            position += 1
            if kind == "{":
                parsed = message(closing=True)
            elif kind == "value":
                parsed = value
            elif kind == "word":
                parsed = _scalar(value)
            else:
                raise ValueError(f"unexpected {value!r} after field {name!r} in text proto")
            if name in fields:
                if not isinstance(fields[name], list):
                    fields[name] = [fields[name]]
                fields[name].append(parsed)
            else:
                fields[name] = parsed
        if closing:
            raise ValueError("missing '}' at the end of the text proto")
        return fields

    return message(closing=False)


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _decoder_options(options: dict) -> dict:
    return {
        "feature_key": options.get("feature_key", "res5"),
        "decoder_channels": options.get("decoder_channels", 256),
        "aspp_channels": options.get("aspp_channels", 256),
        "atrous_rates": tuple(_as_list(options.get("atrous_rates"))),
        "decoder_conv_type": options.get("decoder_conv_type", "depthwise_separable_conv"),
    }


def _conv_type(value: str, field: str) -> str:
    if value not in _CONV_TYPES:
        raise ValueError(f"{field}: unsupported conv type {value!r}; expected {list(_CONV_TYPES)}")
    return _CONV_TYPES[value]


def model_arguments(config: dict) -> dict:
    """Translates a parsed deeplab2 ExperimentOptions into our model arguments.

    Args:
      config: `parse_text_proto` output of a deeplab2 experiment config.

    Returns:
      A dict with `backbone_args` (SWideRNet keyword arguments, `layout` =
      `deeplab2`), `num_classes` and `head_args` (PanopticDeepLab options).

    Raises:
      ValueError: If the config is not Panoptic-DeepLab with a SWideRNet backbone,
        or uses an option this implementation does not have.
    """
    model = config.get("model_options")
    if not isinstance(model, dict):
        raise ValueError("config has no model_options block")
    backbone = {**_BACKBONE_DEFAULTS, **model.get("backbone", {})}
    if backbone["name"] != "swidernet":
        raise ValueError(f"model_options.backbone.name is {backbone['name']!r}; only 'swidernet'")
    sac_stride = backbone["use_sac_beyond_stride"]
    if sac_stride not in (-1, 0, 32):
        raise ValueError(
            f"model_options.backbone.use_sac_beyond_stride={sac_stride}: SAC is implemented "
            "in the stride-32 stage only (32), or off (-1, 0)"
        )
    solver = config.get("trainer_options", {}).get("solver_options", {})
    for field, expected in (("batchnorm_momentum", 0.99), ("batchnorm_epsilon", 0.001)):
        if field in solver and abs(float(solver[field]) - expected) > 1e-9:
            raise ValueError(
                f"trainer_options.solver_options.{field}={solver[field]}: "
                f"only {expected} is supported"
            )
    backbone_args = {
        "w1": float(backbone["stem_width_multiplier"]),
        "w2": float(backbone["backbone_width_multiplier"]),
        "l": float(backbone["backbone_layer_multiplier"]),
        "layout": "deeplab2",
        "squeeze_excite": bool(backbone["use_squeeze_and_excite"]),
        "sac": sac_stride == 32,
        "output_stride": int(backbone["output_stride"]),
        "drop_path_keep_prob": float(backbone["drop_path_keep_prob"]),
        "drop_path_schedule": backbone["drop_path_schedule"],
        "sync_batch_norm": bool(solver.get("use_sync_batchnorm", True)),
    }

    panoptic = model.get("panoptic_deeplab")
    if not isinstance(panoptic, dict):
        raise ValueError("model_options has no panoptic_deeplab block")
    semantic = _decoder_options(model.get("decoder", {}))
    instance_options = panoptic.get("instance", {})
    instance = dict(semantic)
    if "instance_decoder_override" in instance_options:
        instance = _decoder_options(instance_options["instance_decoder_override"])
    low_level = _as_list(panoptic.get("low_level"))
    instance_low_level = _as_list(instance_options.get("low_level_override")) or low_level
    for field, key in (("decoder", semantic), ("instance_decoder_override", instance)):
        if key["feature_key"] != "res5":
            raise ValueError(f"{field}.feature_key must be 'res5', got {key['feature_key']!r}")
    low_keys = tuple(item["feature_key"] for item in low_level)
    if tuple(item["feature_key"] for item in instance_low_level) != low_keys:
        raise ValueError(
            "the instance branch must use the same low-level features as the semantic one"
        )
    semantic_head = panoptic.get("semantic_head", {})
    center_head = instance_options.get("center_head", {})
    regression_head = instance_options.get("regression_head", {})
    if "output_channels" not in semantic_head:
        raise ValueError(
            "panoptic_deeplab.semantic_head.output_channels (the class count) is missing"
        )

    def rates(options):
        return options["atrous_rates"] or None

    head_args = {
        "low_level_endpoints": low_keys,
        "semantic_aspp_channels": semantic["aspp_channels"],
        "semantic_atrous_rates": rates(semantic),
        "semantic_decoder_channels": semantic["decoder_channels"],
        "semantic_low_level_channels": tuple(item["channels_project"] for item in low_level),
        "semantic_head_channels": semantic_head.get("head_channels", 256),
        "instance_aspp_channels": instance["aspp_channels"],
        "instance_atrous_rates": rates(instance),
        "instance_decoder_channels": instance["decoder_channels"],
        "instance_low_level_channels": tuple(
            item["channels_project"] for item in instance_low_level
        ),
        "center_head_channels": center_head.get("head_channels", 32),
        "offset_head_channels": regression_head.get("head_channels", 32),
        # deeplab2's ASPP has only regular convolutions.
        "aspp_conv_type": "standard",
        "semantic_decoder_conv_type": _conv_type(semantic["decoder_conv_type"], "decoder"),
        "instance_decoder_conv_type": _conv_type(
            instance["decoder_conv_type"], "instance_decoder_override"
        ),
        "semantic_head_conv_type": _conv_type(
            semantic_head.get("head_conv_type", "depthwise_separable_conv"), "semantic_head"
        ),
        "center_head_conv_type": _conv_type(
            center_head.get("head_conv_type", "depthwise_separable_conv"), "center_head"
        ),
        "offset_head_conv_type": _conv_type(
            regression_head.get("head_conv_type", "depthwise_separable_conv"), "regression_head"
        ),
        "sync_batch_norm": backbone_args["sync_batch_norm"],
    }
    head_args = {k: v for k, v in head_args.items() if v is not None}
    return {
        "backbone_args": backbone_args,
        "num_classes": int(semantic_head["output_channels"]),
        "head_args": head_args,
    }
