"""Pareto fronts, markdown tables and plots of a search, in the style of the paper's Fig. 3.

Axes: x is the end-to-end latency when it was measured (else parameters, else
M-Adds), to be minimised; y is PQ when it was measured (else M-Adds, the compute
a candidate can spend, else parameters), to be maximised. A candidate is
on the Pareto front when no other candidate is at least as good on both axes and
better on one.
"""

LABELS = {
    "latency_ms": "end-to-end latency (ms)",
    "madds_b": "M-Adds (B)",
    "params_m": "parameters (M)",
    "pq": "PQ (%)",
}


def axes(columns) -> tuple[str, str]:
    """(x, y) column names for the measured columns."""
    columns = set(columns)
    x = next(c for c in ("latency_ms", "params_m", "madds_b") if c in columns)
    y_choices = [c for c in ("pq", "madds_b", "params_m") if c in columns and c != x]
    if not y_choices:
        raise ValueError("a plot needs two measures, e.g. --measure params,madds")
    return x, y_choices[0]


def pareto_front(rows: list[dict], x: str, y: str) -> set[str]:
    """Names of rows not dominated in (low x, high y)."""
    points = [
        (r["name"], r[x], r[y]) for r in rows if r.get(x) is not None and r.get(y) is not None
    ]
    front = set()
    for name, px, py in points:
        dominated = any(qx <= px and qy >= py and (qx < px or qy > py) for _, qx, qy in points)
        if not dominated:
            front.add(name)
    return front


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def markdown(rows: list[dict], columns: list[str], front: set[str]) -> str:
    """A markdown table, sorted by the first measured column, front marked with *."""
    header = ["candidate", "(w1, w2, l)", "regime", *columns, "Pareto"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    key = columns[0] if columns else "name"
    for row in sorted(rows, key=lambda r: (r.get(key) is None, r.get(key) or 0)):
        factors = f"({row['w1']:g}, {row['w2']:g}, {row['l']:g})"
        values = [_fmt(row.get(c)) for c in columns]
        mark = "*" if row["name"] in front else ""
        lines.append("| " + " | ".join([row["name"], factors, row["regime"], *values, mark]) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], x: str, y: str, front: set[str], path: str, title: str) -> None:
    """Writes a PNG scatter plot with the Pareto front drawn in orange."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    points = [r for r in rows if r.get(x) is not None and r.get(y) is not None]
    figure, axis = pyplot.subplots(figsize=(7, 5), dpi=120)
    others = [r for r in points if r["name"] not in front]
    best = sorted((r for r in points if r["name"] in front), key=lambda r: r[x])
    axis.scatter([r[x] for r in others], [r[y] for r in others], c="tab:blue", s=18)
    axis.plot([r[x] for r in best], [r[y] for r in best], "-o", c="tab:orange", ms=6)
    for row in best:
        label = f"({row['w1']:g}, {row['w2']:g}, {row['l']:g})"
        axis.annotate(
            label, (row[x], row[y]), fontsize=7, xytext=(4, -10), textcoords="offset points"
        )
    axis.set_xlabel(LABELS.get(x, x))
    axis.set_ylabel(LABELS.get(y, y))
    axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png")
    pyplot.close(figure)
