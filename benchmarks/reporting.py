"""What every benchmark script reports alongside its figures: the machine's load, and the results as JSON."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, for the record next to every timing."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def write_results(results: dict, path: Path | None, shown: object = None) -> None:
    """Print ``shown`` (by default the results) as JSON, and write the results to ``path`` when given."""
    print(json.dumps(results if shown is None else shown, indent=2, ensure_ascii=False))
    if path:
        path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")


def median_of(runs: list[dict], *path: str) -> float:
    """The median over runs of ``run[path[0]][path[1]]...``, rounded to 0.1 (the summaries' precision)."""
    values = []
    for run in runs:
        for key in path:
            run = run[key]
        values.append(run)
    return round(statistics.median(values), 1)
