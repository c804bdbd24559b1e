"""Named SWideRNet variants: every member of the paper's search spaces.

Names say their factors: `swidernet_{w1}_{w2}_{l}` (e.g. `swidernet_0.25_0.75_1`,
`swidernet_1_1_4.5`), for every candidate of S_fast (eq. 3, 45 candidates) and
S_strong (eq. 4, 21 candidates), plus SWideRNet-(1, 1, 4.5), which the paper uses
on Cityscapes and Mapillary Vistas, and `wide_resnet41`, the WR-41 baseline
(SWideRNet-(1, 1, 1) without SE and SAC).
"""

import fnmatch
import itertools
import re

from swiderrnet_tf.backbones import swidernet

FAST_SPACE = tuple(itertools.product((0.25, 0.5, 1), (0.25, 0.35, 0.5, 0.75, 1), (0.35, 0.75, 1)))
STRONG_SPACE = tuple(itertools.product((1,), (1, 1.5, 2), (1, 2, 3, 4, 5, 5.5, 6)))
# The five fast picks of the paper (Fig. 3b, Table 5).
FAST_PICKS = (
    (0.25, 0.25, 0.75),
    (0.25, 0.35, 0.75),
    (0.25, 0.35, 1),
    (0.25, 0.5, 1),
    (0.25, 0.75, 1),
)

# Options `create_backbone` accepts as overrides (SWideRNet's keyword arguments).
OPTIONS = (
    "layout",
    "squeeze_excite",
    "sac",
    "multi_grid",
    "output_stride",
    "drop_path_keep_prob",
    "drop_path_schedule",
    "classification_classes",
    "sync_batch_norm",
    "recompute",
    "name",
)


def variant_name(w1: float, w2: float, l: float) -> str:
    """Registry name of SWideRNet-(w1, w2, l), e.g. `swidernet_1_1_4.5`."""
    return "swidernet_" + "_".join(f"{v:g}" for v in (w1, w2, l))


def _build_registry() -> dict[str, dict]:
    registry = {}
    for w1, w2, l in FAST_SPACE + STRONG_SPACE + ((1, 1, 4.5),):
        registry[variant_name(w1, w2, l)] = {"w1": w1, "w2": w2, "l": l}
    registry["wide_resnet41"] = {"w1": 1, "w2": 1, "l": 1, "squeeze_excite": False, "sac": False}
    return registry


_REGISTRY = _build_registry()


def list_backbones(pattern: str = "*") -> list[str]:
    """Names of registered backbones matching a shell-style `pattern`, sorted."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern))


def backbone_args(name: str) -> dict:
    """The SWideRNet arguments a name stands for.

    Registered names come from the paper; any other `swidernet_<w1>_<w2>_<l>` with
    positive factors names that member of the family (for custom grids).
    """
    if name in _REGISTRY:
        return dict(_REGISTRY[name])
    match = re.fullmatch(r"swidernet_([0-9.]+)_([0-9.]+)_([0-9.]+)", name)
    try:
        factors = [float(v) for v in match.groups()] if match else []
    except ValueError:
        factors = []
    if len(factors) != 3 or min(factors) <= 0:
        raise ValueError(
            f"unknown backbone {name!r}: names are swidernet_<w1>_<w2>_<l> with positive "
            "factors (the paper's are listed by list_backbones()) or wide_resnet41"
        )
    return dict(zip(("w1", "w2", "l"), factors, strict=True))


def create_backbone(name: str, **overrides) -> swidernet.SWideRNet:
    """Builds the registered backbone `name`.

    Args:
      name: A name from `list_backbones()`.
      **overrides: Any of `OPTIONS`, e.g. `layout="deeplab2"`, `sac=False`,
        `output_stride=32`, `drop_path_keep_prob=0.8`, `recompute="blocks"`.

    Returns:
      The `SWideRNet` model.
    """
    unknown = sorted(set(overrides) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown backbone option(s) {unknown}; valid options: {list(OPTIONS)}")
    args = backbone_args(name)
    args.update(overrides)
    args.setdefault("name", name)
    return swidernet.SWideRNet(**args)
