"""Field checks for config dataclasses: each field's type and range, checked at construction.

A config that is wrong fails where it is made, with a ConfigError naming the config and the field
and what was allowed, instead of as an IndexError / MemoryError / hang deep inside the pipeline.
`bool` is not accepted as an int, nor a float with an integral value (2.0 frames is a typo, not 2).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from worldscape_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class IntField:
    """An int field in [low, high]; `optional` also allows None."""

    low: int
    high: int
    optional: bool = False

    def check(self, owner: str, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            allowed = "an int" + (" or None" if self.optional else "")
            raise ConfigError(owner, f"expected {allowed} in [{self.low}, {self.high}]; got {type(value).__name__} "
                                     f"{value!r:.40}", key=name)
        if not self.low <= value <= self.high:
            raise ConfigError(owner, f"expected a value in [{self.low}, {self.high}]; got {value}", key=name)


@dataclasses.dataclass(frozen=True)
class BoolField:
    """A field that must be True or False."""

    def check(self, owner: str, name: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise ConfigError(owner, f"expected True or False; got {type(value).__name__} {value!r:.40}", key=name)


@dataclasses.dataclass(frozen=True)
class ChoiceField:
    """A field that must be one of `choices`."""

    choices: tuple

    def check(self, owner: str, name: str, value: Any) -> None:
        if not isinstance(value, str | int) or value not in self.choices:
            raise ConfigError(owner, f"expected one of {self.choices}; got {value!r:.40}", key=name)


def check_fields(config: Any, rules: dict[str, IntField | BoolField | ChoiceField]) -> None:
    """Checks every field of the dataclass `config` that `rules` names; the owner in errors is its class."""
    owner = type(config).__name__
    for name, rule in rules.items():
        rule.check(owner, name, getattr(config, name))
