"""Package discovery: everything under worldscape_jax/, plus configs/ installed as worldscape_jax.configs.

The configs live at the top level (big_vision style: `--config configs/teacher.py:tiny`) and are
importable as `worldscape_jax.configs.<name>` so that stage configs can share model presets.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["worldscape_jax", "worldscape_jax.*"]) + ["worldscape_jax.configs"],
    package_dir={"worldscape_jax.configs": "configs"},
    # Trained tiny models shipped with the code (launch/export.py): params.msgpack, config.json, metrics.jsonl.
    # The play page (HTML/JS/CSS) served by launch/play.py.
    package_data={"worldscape_jax": ["assets/*/*", "play/static/*"]},
)
