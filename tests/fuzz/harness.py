"""The fuzz harness: feed a boundary many inputs and classify what each one does.

A *target* is one input boundary (a reader, a parser, a config). For each input (a `Case`) the
harness calls the target's `run` and files the outcome under exactly one of:

  accepted        returned, and the output passes the target's invariants (`check_output`);
  named_error     raised the project's error type, and the message names the source (`case.names`);
  crash           raised anything else, or the project's error without naming the source;
  silently_wrong  returned although the input is wrong by construction (`case.wrong`), or returned
                  an output that breaks the invariants (a NaN pose, a non-rigid camera, ...);
  valid_refused   raised on an input that is valid by construction (`case.valid`);
  hang            took longer than the per-input time limit (interrupted with SIGALRM when Python
                  code is running; counted from the wall clock otherwise).

Adding a target: write a function yielding `Case`s (tiny generated fixtures, mutated with
`mutators.py`, seeded from `rng`), a `run(case.data)` that calls the boundary, optionally a
`check_output(result) -> problem or None`, and call `run_target(Target(...), budget, report)`
from a test (see test_fuzz_*.py). The `fuzz_report` fixture collects every target's counts and
prints the per-target table at the end of the session.
"""

from __future__ import annotations

import dataclasses
import signal
import time
import traceback
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from worldscape_jax.errors import WorldscapeInputError

OUTCOMES = ("accepted", "named_error", "crash", "silently_wrong", "valid_refused", "hang")


@dataclasses.dataclass
class Case:
    """One input: `data` for the target's `run`, how it was made, and what a correct answer is."""

    data: Any
    label: str  # the mutation or injection that made it ("valid", "flip_bit", "nan_depth", ...)
    names: str | tuple[str, ...] = ()  # what a named error must contain (the file name, the field)
    wrong: bool = False  # wrong by construction: accepting it is a silent failure
    valid: bool = False  # valid by construction: refusing it is a failure


@dataclasses.dataclass
class Target:
    name: str
    cases: Callable[[np.random.Generator, int], Iterable[Case]]  # (rng, how many) -> cases
    run: Callable[[Any], Any]
    check_output: Callable[[Any], str | None] = lambda result: None
    error_type: type[BaseException] = WorldscapeInputError


@dataclasses.dataclass
class TargetReport:
    name: str
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # a few per failure outcome
    seconds: float = 0.0

    @property
    def tried(self) -> int:
        return sum(self.counts.values())

    @property
    def failures(self) -> int:
        return sum(self.counts[k] for k in ("crash", "silently_wrong", "valid_refused", "hang"))

    def record(self, outcome: str, detail: str) -> None:
        self.counts[outcome] += 1
        if outcome not in ("accepted", "named_error"):
            self.examples.setdefault(outcome, [])
            if len(self.examples[outcome]) < 5:
                self.examples[outcome].append(detail)

    def summary(self) -> str:
        lines = [f"{self.name}: " + ", ".join(f"{k} {v}" for k, v in self.counts.items())]
        for outcome, details in self.examples.items():
            lines += [f"  {outcome}: {d}" for d in details]
        return "\n".join(lines)


class Hang(BaseException):
    """Raised by the alarm when one input runs past the time limit (BaseException: no `except Exception` eats it)."""


def _on_alarm(signum, frame):
    raise Hang()


def classify(target: Target, case: Case, time_limit: float) -> tuple[str, str]:
    """(outcome, detail) of running `case` through `target`."""
    names = (case.names,) if isinstance(case.names, str) else tuple(case.names)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    start = time.perf_counter()
    try:
        result = target.run(case.data)
        elapsed = time.perf_counter() - start
    except Hang:
        return "hang", f"{case.label}: interrupted after {time_limit:.0f} s"
    except target.error_type as error:
        if time.perf_counter() - start > time_limit:
            return "hang", f"{case.label}: {time.perf_counter() - start:.1f} s before {type(error).__name__}"
        message = str(error)
        if case.valid:
            return "valid_refused", f"{case.label}: {message[:300]}"
        missing = [name for name in names if name not in message]
        if missing:
            return "crash", f"{case.label}: {type(error).__name__} without {missing}: {message[:300]}"
        return "named_error", message
    except Exception as error:  # noqa: BLE001 - classifying every other exception is the point
        frame = traceback.extract_tb(error.__traceback__)[-1]
        return "crash", (f"{case.label}: {type(error).__name__}: {str(error)[:200]} "
                         f"(at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if elapsed > time_limit:
        return "hang", f"{case.label}: {elapsed:.1f} s"
    if case.wrong:
        return "silently_wrong", f"{case.label}: accepted an input that is wrong by construction"
    problem = target.check_output(result)
    if problem is not None:
        return "silently_wrong", f"{case.label}: accepted, but {problem}"
    return "accepted", case.label


def run_target(target: Target, count: int, seed: int = 0, time_limit: float = 10.0) -> TargetReport:
    """Runs `count` cases of `target` (seeded by `seed`) and returns their counts by outcome."""
    report = TargetReport(target.name)
    start = time.perf_counter()
    cases: Iterator[Case] = iter(target.cases(np.random.default_rng(seed), count))
    for case in cases:
        report.record(*classify(target, case, time_limit))
    report.seconds = time.perf_counter() - start
    return report


def hypothesis_cases(strategy, count: int, seed: int) -> list:
    """`count` examples drawn from a hypothesis strategy, reproducibly for a given seed.

    Hypothesis generates (it is good at structured, boundary-seeking values); the harness classifies.
    Every failure is recorded rather than raised, so there is nothing for hypothesis to shrink.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    drawn = []

    @hypothesis_seed(seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example):
        drawn.append(example)

    collect()
    return drawn[:count]


def mutated_file(path, valid: bytes, rng: np.random.Generator, *, data_for=None) -> Case:
    """`valid` with 1-3 random byte mutations written to `path`: a case whose outcome the invariants decide.

    The case's data is `data_for` (default: the path itself); the error must name the file.
    """
    from mutators import mutate_bytes

    data, label = mutate_bytes(valid, rng)
    path.write_bytes(data)
    return Case(path if data_for is None else data_for, label, names=path.name)


def mutated_text(path, valid: str, rng: np.random.Generator) -> Case:
    """`valid` text with one hostile token, line break or byte change; data is (path, text) for a text reader."""
    from mutators import mutate_text

    text, label = mutate_text(valid, rng)
    return Case((path, text), label, names=path.name)
