"""CSV metadata files: rows as dicts, a missing file or column is a one-line DataError."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from ddavs_rt.errors import DataError


def read_table(path: Path, required: Sequence[str | tuple[str, ...]]) -> list[dict[str, str]]:
    """Rows of a CSV file with stripped keys and values. Each entry of `required` is a column
    name or a tuple of accepted spellings; the first spelling present is copied to the first
    name, so callers always read `row[first_name]`."""
    if not path.is_file():
        raise DataError(f"missing metadata file {path}; check the dataset root")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    for entry in required:
        names = (entry,) if isinstance(entry, str) else tuple(entry)
        present = next((name for name in names if name in header), None)
        if present is None:
            raise DataError(f"{path} has no column {' or '.join(repr(n) for n in names)} (columns: {', '.join(header)})")
        if present != names[0]:
            for row in rows:
                row[names[0]] = row[present]
    return rows
