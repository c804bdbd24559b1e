"""Evaluation results as aligned text tables and as a JSON file.

The summary table follows panopticapi's printout (All / Things / Stuff rows of
PQ, SQ, RQ in percent and the number of classes counted), followed by mean IoU,
pixel accuracy and COCO AP when present; the per-class table adds each class's
name, kind, counts, IoU and AP. Undefined values (NaN) print as `-` and are
written to JSON as `null`.
"""

import json
import math
from collections.abc import Mapping
from collections.abc import Sequence

import tensorflow as tf

_GROUP_ROWS = (("All", ""), ("Things", "_thing"), ("Stuff", "_stuff"))
_EXTRA = (
    ("mIoU", "miou"),
    ("pixel accuracy", "pixel_accuracy"),
    ("AP", "ap"),
    ("AP50", "ap50"),
    ("AP75", "ap75"),
)


def _percent(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}"


def format_summary(results: Mapping[str, float]) -> str:
    """Returns the summary table of `PanopticEvaluator.result()` as text."""
    lines = [f"{'':10s}| {'PQ':>6s} {'SQ':>6s} {'RQ':>6s} {'N':>5s}", "-" * 10 + "+" + "-" * 27]
    for label, suffix in _GROUP_ROWS:
        if "pq" + suffix not in results:
            continue
        values = " ".join(f"{_percent(results[k + suffix]):>6s}" for k in ("pq", "sq", "rq"))
        lines.append(f"{label:10s}| {values} {results['n' + suffix]:5d}")
    extra = [f"{label} {_percent(results[key])}" for label, key in _EXTRA if key in results]
    if extra:
        lines.append("  ".join(extra))
    if "num_images" in results:
        lines.append(f"images: {results['num_images']}")
    return "\n".join(lines)


def format_per_class(rows: Sequence[Mapping]) -> str:
    """Returns the per-class table of `PanopticEvaluator.per_class_result()`.

    Classes that PQ did not count (no TP, FP or FN) show `-` for PQ, SQ, RQ.
    """
    name_width = max([len("name")] + [len(row["name"]) for row in rows])
    with_ap = any("ap" in row for row in rows)
    header = f"{'id':>4s}  {'name':<{name_width}s}  {'kind':<5s}"
    header += "".join(f" {h:>6s}" for h in ("PQ", "SQ", "RQ", "TP", "FP", "FN", "IoU"))
    header += f" {'AP':>6s}" if with_ap else ""
    lines = [header, "-" * len(header)]
    for row in rows:
        counted = row["counted"]
        line = f"{row['class_id']:>4d}  {row['name']:<{name_width}s}  {row['kind']:<5s}"
        for key in ("pq", "sq", "rq"):
            line += f" {_percent(row[key]) if counted else '-':>6s}"
        line += "".join(f" {row[key]:>6d}" for key in ("tp", "fp", "fn"))
        line += f" {_percent(row['iou']):>6s}"
        if with_ap:
            line += f" {_percent(row.get('ap')):>6s}"
        lines.append(line)
    return "\n".join(lines)


def _json_safe(value):
    """Replaces NaN and infinities by None, recursively, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: str, results: Mapping, per_class: Sequence[Mapping] | None = None) -> None:
    """Writes `{"metrics": results, "per_class": rows}` as JSON.

    Args:
      path: Output file; local or any filesystem `tf.io.gfile` knows (gs://).
      results: Flat dict of `PanopticEvaluator.result()`.
      per_class: Optional rows of `PanopticEvaluator.per_class_result()`.
    """
    document = {"metrics": _json_safe(dict(results))}
    if per_class is not None:
        document["per_class"] = _json_safe(list(per_class))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(document, indent=2, allow_nan=False) + "\n")
