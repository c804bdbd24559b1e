"""Parses `KEY=VALUE` overrides given on the command line.

Values are read as Python literals where possible (`false`/`true` as booleans,
numbers, lists such as `[6,12,18]` or `6,12,18`), else kept as strings.
"""

import ast


def parse_value(text: str):
    """Reads one override value."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return list(value) if isinstance(value, tuple) else value


def parse_overrides(items) -> dict:
    """Turns `["sac=false", "multi_grid=1,2,4"]` into `{"sac": False, "multi_grid": [1, 2, 4]}`.

    Raises:
      ValueError: If an item has no `=` or an empty key.
    """
    overrides = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} must look like KEY=VALUE, e.g. sac=false")
        overrides[key.strip()] = parse_value(value)
    return overrides
