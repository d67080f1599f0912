"""Count the matmul FLOPs of a JAX function from its jaxpr, looking inside scans.

XLA's cost analysis counts a while-loop body once, so a DiT whose layers run under `nn.scan`
is undercounted by the number of layers. Walking the jaxpr instead, a `scan` multiplies its body's
count by its length; `dot_general` costs 2 * (output size) * (contracted size) and a convolution
2 * (output size) * (kernel window) * (input channels per group). Elementwise work is ignored, as
is usual for MFU. Rematerialised blocks are counted each time they run (hardware FLOPs).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
from jax.extend import core as jex_core


def _dot_general_flops(eqn) -> float:
    lhs, rhs = (v.aval for v in eqn.invars)
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    out = eqn.outvars[0].aval
    contracted = math.prod(lhs.shape[d] for d in lhs_contract)
    return 2.0 * math.prod(out.shape) * contracted


def _conv_flops(eqn) -> float:
    lhs, rhs = (v.aval for v in eqn.invars)
    out = eqn.outvars[0].aval
    dims = eqn.params["dimension_numbers"]
    kernel_spatial = math.prod(rhs.shape[d] for d in dims.rhs_spec[2:])
    in_per_group = rhs.shape[dims.rhs_spec[1]]
    return 2.0 * math.prod(out.shape) * kernel_spatial * in_per_group


def _sub_jaxprs(eqn) -> list[Any]:
    subs = []
    for value in eqn.params.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, jex_core.ClosedJaxpr):
                subs.append(item.jaxpr)
            elif isinstance(item, jex_core.Jaxpr):
                subs.append(item)
    return subs


def jaxpr_flops(jaxpr: Any) -> float:
    """Matmul + convolution FLOPs of a (closed) jaxpr, scans multiplied by their length."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_general_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "scan":
            total += eqn.params["length"] * jaxpr_flops(eqn.params["jaxpr"])
        elif name == "cond":
            total += max(jaxpr_flops(branch) for branch in eqn.params["branches"])
        else:
            total += sum(jaxpr_flops(sub) for sub in _sub_jaxprs(eqn))
    return total


def function_flops(fn: Callable, *args: Any) -> float:
    """Global matmul FLOPs of one call of `fn(*args)` (args may be ShapeDtypeStructs)."""
    return jaxpr_flops(jax.make_jaxpr(fn)(*args))
