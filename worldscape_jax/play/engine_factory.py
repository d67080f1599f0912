"""Engines by name, for launch/play.py and the benchmark: 'model' (the student's stream step) or 'synthworld'."""

from __future__ import annotations

from worldscape_jax.play.engines import Engine, SynthWorldEngine


def make_engine(name: str, model: str = "asset:student_tiny") -> Engine:
    """The engine `name`; for 'model', `model` is an export directory, asset:NAME, or 'random'."""
    if name == "synthworld":
        return SynthWorldEngine()
    if name == "model":
        from worldscape_jax.play.model_engine import load_model_engine

        return load_model_engine(model)
    raise ValueError(f"engine {name!r} is unknown; expected 'model' or 'synthworld'")
