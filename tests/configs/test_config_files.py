"""Config files: one argument parser for all, and `configs/teacher.py:tiny` is the committed teacher's recipe."""

import json

import ml_collections
import pytest

from worldscape_jax.configs import dit, flow_dit, teacher, vae
from worldscape_jax.configs.arguments import ConfigArgumentError
from worldscape_jax.inference.loading import resolve_asset
from worldscape_jax.training.run_config import config_differences


def test_the_tiny_teacher_config_is_the_committed_teachers_field_for_field():
    with open(f"{resolve_asset('asset:teacher_tiny')}/config.json") as f:
        committed = ml_collections.ConfigDict(json.load(f))
    assert config_differences(teacher.get_config("tiny"), committed) == []
    assert config_differences(teacher.get_config("tiny,turn_warp"), committed) == []
    plain = teacher.get_config("tiny,no_turn_warp")
    assert not plain.model.camera.turn_warp and plain.model.in_dim == 3 * plain.model.out_dim


@pytest.mark.parametrize("module, arg, named", [
    (dit, "tiny,camrea", "'camrea'"), (teacher, "tiny,ray_trun", "'ray_trun'"), (teacher, "big", "'big'"),
    (flow_dit, "tiny,turbo", "'turbo'"), (vae, "tiny,camera", "'camera'"), (teacher, "tiny,ray_turn,ray_turn", "more than once"),
    (teacher, "tiny,turn_warp,no_turn_warp", "no_turn_warp"),
])
def test_every_config_file_refuses_what_it_does_not_define(module, arg, named):
    with pytest.raises(ConfigArgumentError, match=f"configs/{module.__name__.rsplit('.', 1)[1]}.py.*{named}"):
        module.get_config(arg)


def test_variants_reach_the_model_config():
    assert flow_dit.get_config("tiny,bf16").model.dtype == "bfloat16"
    ray_turn = teacher.get_config("tiny,ray_turn").model.camera
    assert ray_turn.ray_turn and ray_turn.plucker_channels == 9 and ray_turn.turn_warp
    assert dit.get_config("") == dit.get_config("tiny")
