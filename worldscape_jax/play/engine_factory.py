"""Engines by name, for launch/play.py and the benchmark: 'model' (the student's stream step) or 'synthworld'."""

from __future__ import annotations

from worldscape_jax.play.engines import Engine, SynthWorldEngine


def make_engine(name: str, model: str = "asset:student_tiny", memory: str = "maco") -> Engine:
    """The engine `name`; for 'model', `model` is an export directory, asset:NAME, or 'random', and
    `memory` its KV cache policy ('maco' or 'rolling')."""
    if name == "synthworld":
        return SynthWorldEngine()
    if name == "model":
        from worldscape_jax.play.model_engine import load_model_engine

        return load_model_engine(model, memory=memory)
    raise ValueError(f"engine {name!r} is unknown; expected 'model' or 'synthworld'")
