"""Fuzz suite options: `--fuzz-long` (thousands of inputs), `--fuzz-report=PATH` (JSON of the counts).

    python -m pytest tests/fuzz -q -n 0                      # CI: a few hundred inputs, < 2 min on 2 cores
    nice -n 10 python -m pytest tests/fuzz -q -n 0 --fuzz-long --fuzz-report=fuzz.json

Every target's counts are printed as one table at the end of the session (and written as JSON).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "convert"))  # torch_pickle_writer

from harness import OUTCOMES, Target, TargetReport, run_target  # noqa: E402

_REPORTS: list[TargetReport] = []


def pytest_addoption(parser):
    group = parser.getgroup("fuzz")
    group.addoption("--fuzz-long", action="store_true", default=False,
                    help="run thousands of inputs per target instead of the CI sample")
    group.addoption("--fuzz-report", default=None, help="write the per-target counts as JSON to this path")
    group.addoption("--fuzz-seed", type=int, default=0, help="seed of every target's input generator")


@pytest.fixture
def fuzz(request):
    """`fuzz(target, ci=N, long=M)`: runs the target N (or, with --fuzz-long, M) times and asserts
    no crash of another kind, no silently-wrong acceptance, no refused valid input and no hang."""
    config = request.config

    def run(target: Target, *, ci: int, long: int, time_limit: float = 10.0) -> TargetReport:
        count = long if config.getoption("--fuzz-long") else ci
        report = run_target(target, count, seed=config.getoption("--fuzz-seed"), time_limit=time_limit)
        _REPORTS.append(report)
        assert report.failures == 0, report.summary()
        assert report.counts["named_error"] > 0 and report.counts["accepted"] > 0, (
            f"{target.name}: a campaign should see both accepted and refused inputs\n{report.summary()}")
        return report

    return run


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _REPORTS:
        return
    header = ["target", "tried", *OUTCOMES, "seconds"]
    rows = [[r.name, r.tried, *(r.counts[k] for k in OUTCOMES), f"{r.seconds:.1f}"] for r in _REPORTS]
    totals = ["total", sum(r.tried for r in _REPORTS), *(sum(r.counts[k] for r in _REPORTS) for k in OUTCOMES),
              f"{sum(r.seconds for r in _REPORTS):.1f}"]
    widths = [max(len(str(row[i])) for row in [header, *rows, totals]) for i in range(len(header))]
    terminalreporter.section("fuzz: outcomes per target")
    for row in [header, *rows, totals]:
        terminalreporter.write_line("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths)))
    path = config.getoption("--fuzz-report")
    if path:
        Path(path).write_text(json.dumps([{"target": r.name, "tried": r.tried, **r.counts, "seconds": r.seconds}
                                          for r in _REPORTS], indent=1))
