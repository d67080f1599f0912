"""Start a fresh run from an exported model's params (`config.init_from`)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from worldscape_jax.inference.loading import load_exported


def load_init_params(path: str, abstract_params: Any) -> Any:
    """The params of export `path` (or asset:NAME) for a run that starts from them (`config.init_from`).

    They must have exactly the tree of `abstract_params` (same names and shapes); anything missing, extra
    or mis-shaped is named in the error. Values are cast to the abstract dtypes.
    """
    params, _ = load_exported(path)
    loaded = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(params)}
    wanted = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(abstract_params)}
    problems = [f"missing {k}" for k in wanted if k not in loaded]
    problems += [f"unexpected {k}" for k in loaded if k not in wanted]
    problems += [f"{k}: shape {tuple(np.shape(loaded[k]))}, the model needs {tuple(w.shape)}"
                 for k, w in wanted.items() if k in loaded and tuple(np.shape(loaded[k])) != tuple(w.shape)]
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... ({len(problems) - 8} more)" if len(problems) > 8 else "")
        raise ValueError(f"config.init_from={path}: the export does not fit this model's params: {shown}")
    return jax.tree_util.tree_map_with_path(
        lambda k, w: np.asarray(loaded[jax.tree_util.keystr(k)], w.dtype), abstract_params)
