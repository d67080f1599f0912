"""The one parser of config arguments `SCALE[,VARIANT...]` shared by every config file.

`--config configs/teacher.py:tiny,turn_warp` hands `"tiny,turn_warp"` to `get_config`; each config file
declares its scales and variants and calls `parse_arg`, so a misspelt scale or variant is refused with
the file and the accepted names instead of being ignored.
"""

from __future__ import annotations

from typing import Sequence


class ConfigArgumentError(ValueError):
    """A config argument names a scale or variant its config file does not define."""


def parse_arg(arg: str | None, config_file: str, scales: Sequence[str], variants: Sequence[str],
              default_scale: str = "tiny") -> tuple[str, tuple[str, ...]]:
    """`"scale,variant,..."` -> (scale, variants), checked against the file's `scales` and `variants`.

    An empty argument means `default_scale` without variants; a variant given twice is an error too,
    since it would read as if it did something twice.
    """
    scale, *given = [part.strip() for part in (arg or default_scale).split(",") if part.strip()] or [default_scale]
    if scale not in scales:
        raise ConfigArgumentError(f"{config_file}: unknown scale {scale!r} in {arg!r}; expected one of "
                                  f"{', '.join(scales)}")
    unknown = [v for v in given if v not in variants]
    if unknown:
        raise ConfigArgumentError(f"{config_file}: unknown variants {unknown} in {arg!r}; expected any of "
                                  f"{', '.join(variants) or '(none)'} after the scale")
    repeated = sorted({v for v in given if given.count(v) > 1})
    if repeated:
        raise ConfigArgumentError(f"{config_file}: variants {repeated} given more than once in {arg!r}")
    return scale, tuple(given)
