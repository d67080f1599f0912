"""What a checkpoint conversion did, in one shape for every converter (DiT, VAE).

A conversion either fills every Flax parameter and consumes every checkpoint tensor or raises
`ConversionError`, so a report lists only what was read and the two accepted exceptions: parameters
no checkpoint of that kind holds (kept at the model's init, with the reason) and checkpoint keys the
model does not use (ignored on purpose, with the reason). The launch scripts print `summary()`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from worldscape_jax.convert.state_dict import StateDictConsumer


@dataclasses.dataclass
class ConversionReport:
    """What one conversion read from the checkpoint, kept at init and ignored."""

    source: str
    naming: str
    tensors_read: int
    params_filled: list[str]  # Flax paths filled from the checkpoint
    params_left_at_init: dict[str, str]  # Flax path -> why no checkpoint holds it
    keys_ignored: dict[str, str]  # checkpoint key -> why the model does not use it
    parameter_count: int

    @classmethod
    def of(cls, consumer: StateDictConsumer, naming: str, params_filled: list[str],
           params_left_at_init: dict[str, str], parameter_count: int) -> "ConversionReport":
        """The report of a finished `consumer` (one that raised nothing)."""
        return cls(source=consumer.source, naming=naming, tensors_read=consumer.tensors_read,
                   params_filled=params_filled, params_left_at_init=params_left_at_init,
                   keys_ignored=dict(consumer.ignored), parameter_count=parameter_count)

    def summary(self) -> str:
        lines = [f"checkpoint: {self.source} ({self.naming} naming)",
                 f"tensors read: {self.tensors_read}",
                 f"params written: {len(self.params_filled)} arrays filled from the checkpoint",
                 f"total parameters: {self.parameter_count:,}"]
        if self.params_left_at_init:
            lines.append(f"params left at init ({len(self.params_left_at_init)} arrays), not in the checkpoint:")
            by_reason: dict[str, list[str]] = {}
            for path, why in self.params_left_at_init.items():
                by_reason.setdefault(why, []).append(path)
            for why, paths in by_reason.items():
                lines += [f"  {path}" for path in paths] + [f"  -> {why}"]
        else:
            lines.append("params left at init: none")
        if self.keys_ignored:
            lines.append(f"checkpoint keys ignored on purpose ({len(self.keys_ignored)}):")
            lines += [f"  {key}: {why}" for key, why in self.keys_ignored.items()]
        return "\n".join(lines)


class Converted(NamedTuple):
    """A converter's result: the Flax params and the report of what was read."""

    params: dict[str, Any]
    report: ConversionReport
