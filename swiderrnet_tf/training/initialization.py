"""Initialises a Panoptic-DeepLab from pretrained weights, with a report.

The starting points of the paper (section 4) and of its Table 8 "MV" rows:
an ImageNet-pretrained backbone, or a whole Panoptic-DeepLab trained on
another dataset (Mapillary Vistas before Cityscapes). Sources (read by
`init_sources`): an ImageNet pre-training run or a panoptic run of this project
(folder or `ckpt-<step>`), or a model imported from deeplab2 by
`tools/import_deeplab2` (folder or `.weights.h5`, whole model or backbone).

Weights are matched by Keras variable path (`stage3_block2/conv1_bn_act/conv/
kernel`, `semantic_decoder/aspp/...`). `scope` says what is copied:
  * `backbone`: the SWideRNet (`stem/...`, `stageN_blockM/...`);
  * `all_but_heads`: everything except the heads;
  * `all`: everything; a head whose class count differs is skipped.
The heads are the last prediction convolutions whose shape depends on the
class count: `semantic_head/final_conv` (kernel `[1, 1, C, num_classes]`,
bias `[num_classes]`). The center and offset heads predict 1 and 2 channels
whatever the dataset, so they belong to `all_but_heads`. An ImageNet source's
`classifier` has no counterpart in a panoptic model and is always skipped.

Every decision is made before anything is assigned, so a failure leaves the
model as it was. Errors: a source weight in scope that matches nothing; a
shape mismatch outside the heads (naming the variable and both shapes); with
`strict`, a weight in scope that the source does not have, or a backbone
layout that differs from the source's config (the weights would fit, but
compute something else). Each error ends with the settings that explain it
when `init_explain` can tell.

Deliberate deviations from deeplab2 (`restore_semantic_last_layer_from_initial_checkpoint`
and `restore_instance_last_layer_from_initial_checkpoint`):
  1. Whether the last layers are restored follows from the scope and their
     shapes, not from two flags: `all_but_heads` re-initialises only the
     semantic last layer, the one whose shape depends on the class count; the
     center and offset last layers come with the decoders whenever they do.
  2. Weights are matched by variable path, not by checkpoint object, so a
     backbone trained alone (ImageNet) and one inside a panoptic model match.
"""

import collections
import dataclasses
import re

import numpy as np
from absl import logging

from swiderrnet_tf.training import init_explain
from swiderrnet_tf.training import init_sources

SCOPES = ("backbone", "all_but_heads", "all")
HEADS = ("semantic_head/final_conv",)
CLASSIFIER = "classifier"
BACKBONE = "backbone"
NOT_IN_SOURCE = "not in the source"
MODULE_ORDER = (
    BACKBONE,
    "semantic_decoder",
    "instance_decoder",
    "semantic_head",
    "center_head",
    "offset_head",
    CLASSIFIER,
)
_BACKBONE_PATH = re.compile(r"^(stem|stage\d+_block\d+)/")


def module_of(path: str) -> str:
    """The top-level module a variable path belongs to (`backbone` for the SWideRNet)."""
    if _BACKBONE_PATH.match(path):
        return BACKBONE
    return path.split("/", 1)[0]


def _order(path: str) -> tuple:
    module = module_of(path)
    rank = MODULE_ORDER.index(module) if module in MODULE_ORDER else len(MODULE_ORDER)
    return rank, module, path


def is_head(path: str) -> bool:
    """Whether a variable belongs to a class-count head (see the module docstring)."""
    return any(path.startswith(head + "/") for head in HEADS)


def in_scope(path: str, scope: str) -> bool:
    """Whether `scope` copies the variable `path`."""
    module = module_of(path)
    if module == CLASSIFIER:
        return False
    if scope == BACKBONE:
        return module == BACKBONE
    if scope == "all_but_heads":
        return not is_head(path)
    return True


@dataclasses.dataclass
class InitReport:
    """What `initialize_model` did.

    Attributes:
      source: The checkpoint prefix or weights file read.
      kind: `training checkpoint` or `weights file`.
      scope: The scope used.
      loaded: Our variable paths that received the source's value.
      skipped: Source variable path -> why it was not copied.
      kept: Our variable path -> why it keeps its initial value.
      notes: Settings in which the source and our model differ.
    """

    source: str
    kind: str
    scope: str
    loaded: list[str]
    skipped: dict[str, str]
    kept: dict[str, str]
    notes: list[str]

    @property
    def missing(self) -> list[str]:
        """Our variables in scope that the source lacks."""
        return [p for p, reason in self.kept.items() if reason == NOT_IN_SOURCE]


def _hints(notes) -> str:
    return f"; differences: {'; '.join(notes)}" if notes else ""


def _plan(source, target: dict, scope: str, notes: list[str]) -> InitReport:
    """Decides what each variable gets; raises on what cannot be copied."""
    loaded, skipped, unmatched, mismatched = [], {}, [], []
    for path in sorted(source.shapes, key=_order):
        shape = source.shapes[path]
        ours = tuple(target[path].shape) if path in target else None
        if module_of(path) == CLASSIFIER:
            skipped[path] = "ImageNet classifier: a panoptic model has none"
        elif not in_scope(path, scope):
            skipped[path] = f"outside scope {scope!r}"
        elif path not in target:
            unmatched.append(path)
        elif shape == ours:
            loaded.append(path)
        elif is_head(path) and shape[:-1] == ours[:-1]:
            skipped[path] = f"class count {shape[-1]} in the source, {ours[-1]} here"
        else:
            mismatched.append(f"{path}: {list(shape)} in the source, {list(ours)} here")
    if unmatched:
        raise ValueError(
            f"{source.path}: {len(unmatched)} source weight(s) in scope {scope!r} match no "
            f"variable of the model, e.g. {unmatched[:5]}{_hints(notes)}"
        )
    if mismatched:
        raise ValueError(
            f"{source.path}: shapes differ for {len(mismatched)} weight(s): "
            f"{'; '.join(mismatched[:5])}{_hints(notes)}"
        )
    if not loaded:
        raise ValueError(
            f"{source.path}: none of its {len(source.shapes)} weights is in scope {scope!r} "
            f"(e.g. {sorted(source.shapes)[:3]})"
        )
    done = set(loaded)
    kept = {}
    for path in sorted(target, key=_order):
        if path in done:
            continue
        if not in_scope(path, scope):
            kept[path] = f"outside scope {scope!r}"
        elif path in skipped:
            kept[path] = skipped[path]
        else:
            kept[path] = NOT_IN_SOURCE
    return InitReport(source.path, source.kind, scope, loaded, skipped, kept, notes)


def initialize_model(model, path: str, *, scope: str = BACKBONE, strict: bool = True):
    """Copies pretrained weights into `model` by variable path.

    Args:
      model: Our Panoptic-DeepLab (`model.backbone` is the SWideRNet); its
        variables may be distributed.
      path: An ImageNet or panoptic run folder or `ckpt-<step>` prefix of this
        project, or an imported deeplab2 folder or `.weights.h5` file.
      scope: `backbone`, `all_but_heads` or `all` (see the module docstring).
      strict: Fail if a variable in scope gets no value, or if the source's
        config names another backbone layout.

    Returns:
      The `InitReport` (see `format_report`).

    Raises:
      FileNotFoundError: Nothing readable at `path`.
      ValueError: An unknown scope, a source weight in scope that matches
        nothing, a shape mismatch outside the heads, nothing to copy, or
        (strict) a variable in scope without a value or another layout; the
        message names the variables and, when it can tell, the settings.
    """
    if scope not in SCOPES:
        raise ValueError(f"train.init_scope must be one of {SCOPES}, got {scope!r}")
    source = init_sources.read_source(path, model)
    target = {w.path: w for w in model.weights if init_sources.is_model_weight(w.path)}
    target_config = init_explain.backbone_config_of(getattr(model, "backbone", model))
    notes = init_explain.explain(
        source, {p: tuple(w.shape) for p, w in target.items()}, target_config
    )
    report = _plan(source, target, scope, notes)
    if strict and report.missing:
        raise ValueError(
            f"{source.path}: {len(report.missing)} model variable(s) in scope {scope!r} have no "
            f"value in it, e.g. {report.missing[:5]}{_hints(notes)}; set "
            "train.init_checkpoint_strict = False to leave them at their initial value"
        )
    layouts = (source.config or {}).get("layout"), (target_config or {}).get("layout")
    if strict and None not in layouts and layouts[0] != layouts[1]:
        raise ValueError(
            f"{source.path}: its backbone is in the {layouts[0]!r} layout "
            f"({source.config_origin}), ours in {layouts[1]!r}: the weights fit but compute "
            f"something else; build ours with layout={layouts[0]!r} (e.g. in "
            "build_panoptic_deeplab.backbone_options) or set train.init_checkpoint_strict = False"
        )
    for name in report.loaded:
        variable = target[name]
        variable.assign(np.asarray(source.read(name), dtype=np.dtype(variable.dtype)))
    return report


def _table(report: InitReport) -> list[str]:
    counts = collections.defaultdict(lambda: [0, 0, 0])
    for path in report.loaded:
        counts[module_of(path)][0] += 1
    for path in report.skipped:
        counts[module_of(path)][1] += 1
    for path in report.kept:
        counts[module_of(path)][2] += 1
    modules = [m for m in MODULE_ORDER if m in counts] + sorted(set(counts) - set(MODULE_ORDER))
    rows = [(m, *counts[m]) for m in modules]
    rows.append(("total", *(sum(column) for column in zip(*counts.values(), strict=True))))
    lines = [f"  {'module':<18}{'loaded':>8}{'skipped':>9}{'kept initial':>14}"]
    lines += [f"  {m:<18}{a:>8}{b:>9}{c:>14}" for m, a, b, c in rows]
    return lines


def _by_reason(reasons: dict) -> dict:
    grouped = collections.defaultdict(list)
    for path, reason in reasons.items():
        grouped[reason].append(path)
    return grouped


def _names(report: InitReport) -> list[str]:
    lines = []
    skipped = _by_reason(report.skipped)
    for reason, paths in skipped.items():
        lines.append(f"  skipped, in the source ({reason}): {len(paths)}")
        lines += [f"    {p}" for p in paths]
    for reason, paths in _by_reason(report.kept).items():
        if paths == skipped.get(reason):
            lines.append(f"  kept at the initial value ({reason}): the {len(paths)} above")
            continue
        lines.append(f"  kept at the initial value ({reason}): {len(paths)}")
        lines += [f"    {p}" for p in paths]
    return lines


def format_report(report: InitReport) -> str:
    """The report as log lines: counts per module, then every name not loaded, by reason."""
    lines = [
        f"Initialised from {report.source} ({report.kind}), scope {report.scope!r}: "
        f"{len(report.loaded)} variables loaded",
        *_table(report),
        *_names(report),
        *(f"  differs from the source: {note}" for note in report.notes),
    ]
    return "\n".join(lines)


def log_report(report: InitReport) -> None:
    """Logs `format_report`; a warning when something in scope kept its initial value."""
    if report.missing or report.notes:
        logging.warning("%s", format_report(report))
    else:
        logging.info("%s", format_report(report))
