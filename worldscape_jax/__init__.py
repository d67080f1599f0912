"""worldscape-jax: WorldScape, a real-time interactive video world model, in JAX/Flax."""

__version__ = "0.1.0"
