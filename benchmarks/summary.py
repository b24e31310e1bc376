"""Merge every benchmark's results/bench/<name>.json into results/bench/summary.json and summary.md."""

from __future__ import annotations

import json
from pathlib import Path


def _flat(rows: dict, prefix: str = "") -> dict:
    """Nested records (the reliability table's per-category counts) as `category.count` metrics."""
    flat = {}
    for key, value in rows.items():
        flat.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def main(folder: str = "results/bench") -> None:
    root = Path(folder)
    results = {path.stem: json.loads(path.read_text()) for path in sorted(root.glob("*.json")) if path.stem != "summary"}
    (root / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| benchmark | metric | value |", "|---|---|---|"]
    lines += [f"| {name} | {metric} | {value:.4g} |" for name, rows in results.items()
              for metric, value in _flat(rows).items() if isinstance(value, (int, float))]
    (root / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
