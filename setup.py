"""Package discovery: everything under worldscape_jax/, plus configs/ installed as worldscape_jax.configs.

The configs live at the top level (big_vision style: `--config configs/teacher.py:tiny`) and are
importable as `worldscape_jax.configs.<name>` so that stage configs can share model presets.
"""

from setuptools import find_namespace_packages, find_packages, setup

# Folders of data shipped with the code: the trained tiny models (launch/export.py: params.msgpack,
# manifest.json, config.json, metrics.jsonl) and the play page (HTML/JS/CSS served by launch/play.py).
# Each is declared as a data-only package, so setuptools neither skips it nor warns that an importable
# folder is missing from `packages`.
DATA_PACKAGES = find_namespace_packages(
    include=["worldscape_jax.assets", "worldscape_jax.assets.*", "worldscape_jax.play.static"])

setup(
    packages=find_packages(include=["worldscape_jax", "worldscape_jax.*"]) + ["worldscape_jax.configs"]
    + DATA_PACKAGES,
    package_dir={"worldscape_jax.configs": "configs"},
    package_data={name: ["*"] for name in DATA_PACKAGES},
)
