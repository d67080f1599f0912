"""Turn a torch state dict into Flax parameters, taking every key exactly once.

`StateDictConsumer` is shared by the model converters (DiT, VAE): each Flax parameter asks for
its checkpoint key with the layout that maps torch's tensor to Flax's (`LINEAR`, `conv_layout`,
...). The consumer checks the shape, remembers what was missing, mismatched or explicitly ignored,
and `finish()` raises ONE `ConversionError` that lists every problem at once, including all keys
nobody asked for, so a wrong checkpoint never half-loads silently. Every tensor taken must be
floating point of a dtype a float32 model can take exactly (float64/32/16, bfloat16, float8) and
finite: an int, bool or complex tensor, or a NaN/inf weight, is reported with its name.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import ml_dtypes
import numpy as np

from worldscape_jax.errors import CheckpointError

WEIGHT_DTYPES = tuple(np.dtype(d) for d in (np.float64, np.float32, np.float16, ml_dtypes.bfloat16,
                                            ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2))


class ConversionError(CheckpointError):
    """A checkpoint does not match the model: lists missing keys, left-over keys, shape, dtype and value problems."""

    def __init__(self, message: str):
        ValueError.__init__(self, message)
        self.path, self.line, self.key, self.problem = None, None, None, message


def weight_problem(value: np.ndarray) -> str | None:
    """Why `value` cannot be a weight (its dtype or non-finite entries), or None."""
    dtype = np.asarray(value).dtype
    if dtype not in WEIGHT_DTYPES:
        return f"dtype {dtype}; expected a floating dtype ({', '.join(str(d) for d in WEIGHT_DTYPES)})"
    bad = int(np.size(value) - np.count_nonzero(np.isfinite(np.asarray(value, np.float32))))
    return f"{bad} of {np.size(value)} values are NaN or inf" if bad else None


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one torch tensor becomes one Flax array: `to_flax` moves the axes, `torch_shape` gives the
    torch shape that a Flax shape implies (used to check the checkpoint before converting)."""

    name: str
    to_flax: Callable[[np.ndarray], np.ndarray]
    torch_shape: Callable[[tuple[int, ...]], tuple[int, ...]]


IDENTITY = Layout("identity", lambda a: a, lambda s: tuple(s))
# torch Linear weight [out, in] -> Flax Dense kernel [in, out].
LINEAR = Layout("linear", lambda a: np.swapaxes(a, 0, 1), lambda s: (s[1], s[0]))
# A parameter that torch stores with a leading singleton axis, e.g. Wan's modulation [1, 6, dim].
SQUEEZE_LEADING = Layout("squeeze_leading", lambda a: a[0], lambda s: (1, *s))


def conv_layout(spatial_dims: int) -> Layout:
    """torch ConvNd weight [out, in, *k] -> Flax Conv kernel [*k, in, out]."""
    to_flax_axes = (*range(2, 2 + spatial_dims), 1, 0)
    return Layout(
        f"conv{spatial_dims}d",
        lambda a: np.transpose(a, to_flax_axes),
        lambda s: (s[-1], s[-2], *s[:-2]),
    )


@dataclasses.dataclass(frozen=True)
class _Mismatch:
    key: str
    found: tuple[int, ...]
    expected: tuple[int, ...]
    target: str


class StateDictConsumer:
    """Hands out checkpoint tensors once each and reports everything that did not fit.

    Usage:
        consumer = StateDictConsumer(state_dict, source="wan.safetensors")
        kernel = consumer.take("head.head.weight", LINEAR, flax_shape=(1536, 64), target="params/head/kernel")
        stacked = consumer.take_stacked([f"blocks.{i}.modulation" for i in range(30)], SQUEEZE_LEADING, (6, 1536))
        consumer.ignore_matching(r"...", reason="unused by the model")
        consumer.finish()  # raises ConversionError listing all missing / left-over / mismatched keys

    `take` returns None when the key is missing or has the wrong shape (the problem is recorded),
    so a converter can go on and collect every problem before `finish()`.
    """

    def __init__(self, state_dict: Mapping[str, np.ndarray], source: str = "checkpoint"):
        self.source = source
        self._remaining: dict[str, np.ndarray] = dict(state_dict)
        self.consumed: list[str] = []
        self.missing: list[tuple[str, str]] = []
        self.mismatched: list[_Mismatch] = []
        self.bad_values: list[tuple[str, str]] = []
        self.ignored: dict[str, str] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._remaining

    @property
    def tensors_read(self) -> int:
        return len(self.consumed)

    def take(self, key: str, layout: Layout = IDENTITY, flax_shape: Sequence[int] | None = None,
             *, target: str = "") -> np.ndarray | None:
        """Pop `key`, check its shape against the one `flax_shape` implies, return it in Flax layout."""
        if key not in self._remaining:
            self.missing.append((key, target))
            return None
        value = self._remaining.pop(key)
        self.consumed.append(key)
        problem = weight_problem(value)
        if problem is not None:
            self.bad_values.append((key, problem))
            return None
        if flax_shape is not None:
            expected = tuple(layout.torch_shape(tuple(flax_shape)))
            if tuple(value.shape) != expected:
                self.mismatched.append(_Mismatch(key, tuple(value.shape), expected, target))
                return None
        return layout.to_flax(value)

    def take_stacked(self, keys: Sequence[str], layout: Layout = IDENTITY,
                     flax_shape: Sequence[int] | None = None, *, target: str = "") -> np.ndarray | None:
        """`take` each key (one per scanned layer) and stack them on a new leading axis."""
        parts = [self.take(key, layout, flax_shape, target=f"{target}[{i}]") for i, key in enumerate(keys)]
        if any(part is None for part in parts):
            return None
        return np.stack(parts, axis=0)

    def ignore(self, key: str, reason: str) -> None:
        """Consume `key` on purpose (it is reported as ignored, with the reason)."""
        if key in self._remaining:
            del self._remaining[key]
            self.ignored[key] = reason

    def ignore_matching(self, pattern: str, reason: str) -> None:
        """Consume every remaining key that fully matches the regular expression `pattern`."""
        regex = re.compile(pattern)
        for key in [k for k in self._remaining if regex.fullmatch(k)]:
            self.ignore(key, reason)

    def leftovers(self) -> list[str]:
        return sorted(self._remaining)

    def problems(self) -> list[str]:
        """Human-readable lines, one per problem (empty when everything matched)."""
        lines = []
        if self.missing:
            lines.append(f"missing from the checkpoint ({len(self.missing)}):")
            lines += [f"    {key}" + (f"  (for {target})" if target else "") for key, target in self.missing]
        leftovers = self.leftovers()
        if leftovers:
            lines.append(f"left over in the checkpoint, used by no parameter ({len(leftovers)}):")
            lines += [f"    {key}  shape {tuple(self._remaining[key].shape)}" for key in leftovers]
        if self.mismatched:
            lines.append(f"shape mismatches ({len(self.mismatched)}):")
            lines += [f"    {m.key}: checkpoint has {m.found}, expected {m.expected}"
                      + (f" (for {m.target})" if m.target else "") for m in self.mismatched]
        if self.bad_values:
            lines.append(f"tensors that cannot be weights ({len(self.bad_values)}):")
            lines += [f"    {key}: {problem}" for key, problem in self.bad_values]
        return lines

    def finish(self, context: str = "", hints: Iterable[str] = ()) -> None:
        """Raise one ConversionError listing every problem, or return if there is none."""
        lines = self.problems()
        if not lines:
            return
        header = f"converting {self.source}" + (f" ({context})" if context else "")
        hint_lines = [f"hint: {hint}" for hint in hints]
        raise ConversionError("\n  ".join([f"{header}: the checkpoint does not match the model", *lines,
                                           *hint_lines]))
