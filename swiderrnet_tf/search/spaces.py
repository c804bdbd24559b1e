"""Search spaces of SWideRNet-(w1, w2, l) (paper section 3.2, eqs. 3 and 4).

`fast` is S_fast (45 candidates, scaled down, searched in the fast regime) and
`strong` is S_strong (21 candidates, scaled up, strong regime). A custom grid
comes from gin: `custom_space.w1 = [...]`, `custom_space.w2 = [...]`,
`custom_space.l = [...]` and optionally `custom_space.regime`.
"""

import dataclasses
import itertools

import gin

from swiderrnet_tf.backbones import block_plan
from swiderrnet_tf.backbones import registry

SPACES = ("fast", "strong", "custom")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One member of a search space."""

    w1: float
    w2: float
    l: float
    regime: str

    @property
    def name(self) -> str:
        return registry.variant_name(self.w1, self.w2, self.l)


@gin.configurable
def custom_space(w1=gin.REQUIRED, w2=gin.REQUIRED, l=gin.REQUIRED, regime: str = "fast"):
    """The product of the given factor lists, in the given Panoptic-DeepLab regime."""
    candidates = []
    for name, values in (("w1", w1), ("w2", w2), ("l", l)):
        if not values or min(values) <= 0:
            raise ValueError(f"custom_space.{name} must be a non-empty list of positive numbers")
    for values in itertools.product(w1, w2, l):
        block_plan.stage_depths(values[2])  # a clear error for l too small to give blocks
        candidates.append(Candidate(*(float(v) for v in values), regime=regime))
    return candidates


def candidates(space: str) -> list[Candidate]:
    """The candidates of `space` in the paper's order (w1, then w2, then l)."""
    if space == "fast":
        return [Candidate(*f, regime="fast") for f in registry.FAST_SPACE]
    if space == "strong":
        return [Candidate(*f, regime="strong") for f in registry.STRONG_SPACE]
    if space == "custom":
        return custom_space()
    raise ValueError(f"unknown search space {space!r}; expected one of {SPACES}")
