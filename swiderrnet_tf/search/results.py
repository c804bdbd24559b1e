"""A resumable results table: one CSV row per candidate, rewritten atomically.

After each candidate the whole table is written to a temporary file and renamed
over `results.csv`, so an interrupted search leaves the last complete table,
and a restart measures only what is missing. Plain local files: the search
also runs where only JAX is installed.
"""

import csv
import math
import os

KEY_COLUMNS = ("name", "w1", "w2", "l", "regime")


def _parse(value: str):
    if value in ("", "nan"):
        return None
    try:
        return float(value)
    except ValueError:
        return value


class ResultsTable:
    """Rows keyed by candidate name, stored in the local file `path`."""

    def __init__(self, path: str, value_columns: list[str]):
        self.path = path
        self.value_columns = list(value_columns)
        self.rows: dict[str, dict] = {}
        if os.path.exists(path):
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    self.rows[row["name"]] = {k: _parse(v) for k, v in row.items()}
            for row in self.rows.values():
                for column in row:
                    if column not in KEY_COLUMNS and column not in self.value_columns:
                        self.value_columns.append(column)

    def missing(self, name: str, columns) -> list[str]:
        """The columns of `columns` that `name` has no value for yet."""
        row = self.rows.get(name, {})
        return [c for c in columns if row.get(c) is None]

    def update(self, key: dict, values: dict) -> None:
        """Adds values to a candidate's row and rewrites the table."""
        row = self.rows.setdefault(key["name"], dict(key))
        row.update(values)
        self._write()

    def _write(self) -> None:
        columns = list(KEY_COLUMNS) + self.value_columns
        temporary = self.path + ".tmp"
        with open(temporary, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in self.rows.values():
                writer.writerow(
                    {
                        c: ""
                        if row.get(c) is None or (isinstance(row[c], float) and math.isnan(row[c]))
                        else row[c]
                        for c in columns
                    }
                )
        os.replace(temporary, self.path)
