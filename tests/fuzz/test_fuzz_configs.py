"""Fuzz the settings a user types: PipelineConfig fields, SynthWorld export configs and action strings."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
from harness import Case, Target, hypothesis_cases
from test_fuzz_poses import check_poses

from worldscape_jax.data.pipeline import PipelineConfig
from worldscape_jax.data.tfds_builder import make_config
from worldscape_jax.geometry.actions import ActionConfig, actions_to_c2w

# Values that are wrong for any int field (a float, a bool, a string, negative, absurdly large).
BAD_INTS = st.sampled_from([2.0, 2.5, True, "4", None, -1, 10**9, 2**80, float("nan"), [2]])
BAD_BOOLS = st.sampled_from([0, 1, "yes", None, 2.0])
GOOD_FIELDS = {
    "batch_size": st.integers(1, 4), "num_frames": st.integers(1, 8), "height": st.integers(1, 64),
    "width": st.integers(1, 64), "frame_stride": st.integers(1, 4), "random_start": st.booleans(),
    "random_crop": st.booleans(), "with_depth": st.booleans(), "seed": st.integers(0, 2**32),
    "shuffle": st.booleans(), "num_epochs": st.none() | st.integers(1, 5), "worker_count": st.integers(0, 2),
    "read_threads": st.integers(0, 8), "prefetch_batches": st.integers(0, 16),
}
BOOL_FIELDS = {"random_start", "random_crop", "with_depth", "shuffle"}


@st.composite
def pipeline_fields(draw):
    """(fields, names of the fields made wrong); about a third of the configs carry one or two wrong fields."""
    fields = {name: draw(strategy) for name, strategy in GOOD_FIELDS.items()}
    wrong = draw(st.lists(st.sampled_from(sorted(GOOD_FIELDS)), max_size=2, unique=True)) if draw(
        st.integers(0, 2)) == 0 else []
    for name in wrong:
        bad = draw(BAD_BOOLS if name in BOOL_FIELDS else BAD_INTS)
        if name == "num_epochs" and bad is None:
            bad = 0
        if name in ("worker_count", "read_threads", "prefetch_batches", "seed", "num_epochs") and bad == 10**9:
            bad = -1  # 10**9 is a legal seed or epoch count (and refused threads only as a cap); -1 never is
        fields[name] = bad
    return fields, wrong


def pipeline_cases(rng, count):
    for fields, wrong in hypothesis_cases(pipeline_fields(), count, int(rng.integers(2**31))):
        field = f"field '{wrong[0]}'" if len(wrong) == 1 else "field '"  # with two, either may be named
        yield Case(fields, f"wrong {wrong}" if wrong else "valid", names=("PipelineConfig", field),
                   wrong=bool(wrong), valid=not wrong)
    yield Case(dict(batch_size=10**9, num_frames=17, height=480, width=832), "batch_size 10**9",
               names=("PipelineConfig", "batch_size"), wrong=True)
    yield Case(dict(batch_size=1, num_frames=2.0, height=2.5, width=8), "float sizes", names="PipelineConfig",
               wrong=True)


def make_pipeline_config(fields: dict) -> PipelineConfig:
    return PipelineConfig(process_index=0, process_count=1, **fields)


def test_fuzz_pipeline_config(fuzz):
    fuzz(Target("pipeline_config", pipeline_cases, make_pipeline_config), ci=150, long=3000)


def synthworld_config_cases(rng, count):
    fields = st.fixed_dictionaries({
        "kind": st.sampled_from(["navigation", "manipulation", "Navigation", "", 3]),
        "num_clips": st.integers(1, 10) | BAD_INTS, "frames": st.integers(1, 10) | BAD_INTS,
        "height": st.integers(1, 64) | BAD_INTS, "width": st.integers(1, 64) | BAD_INTS,
    })
    for drawn in hypothesis_cases(fields, count, int(rng.integers(2**31))):
        wrong = drawn["kind"] not in ("navigation", "manipulation") or any(
            isinstance(drawn[k], bool) or not isinstance(drawn[k], int) or drawn[k] < 1 or drawn[k] > 10**6
            for k in ("num_clips", "frames", "height", "width"))
        yield Case(drawn, str(drawn)[:80], names=("SynthWorldConfig", "field '"), wrong=wrong, valid=not wrong)


def make_synthworld_config(fields: dict):
    return make_config(**fields)


def test_fuzz_synthworld_config(fuzz):
    fuzz(Target("synthworld_config", synthworld_config_cases, make_synthworld_config), ci=100, long=2000)


# ---- action strings ---------------------------------------------------------------------------------------

GOOD_KEYS = st.sampled_from(["w", "s", "a", "d", "q", "e", "r", "f", ".", "wd", "wq", "sa", "de", "rf"[0], "wdq"])
BAD_KEYS = st.sampled_from(["ws", "qe", "ww", "w.", "x", "w\x00", "ẃ", "", "*", "w-"])
GOOD_COUNTS = st.one_of(st.just(""), st.integers(1, 40).map(lambda n: f"*{n}"))
BAD_COUNTS = st.sampled_from(["*0", "*999999999", "*200000", "*" + "9" * 5000, "*٣", "*+5", "*1_000", "*-1", "*",
                              "*1.5", "*１"])


@st.composite
def action_strings(draw):
    items, wrong = [], False
    for _ in range(draw(st.integers(1, 5))):
        bad_keys, bad_count = draw(st.integers(0, 9)) == 0, draw(st.integers(0, 9)) == 0
        keys = draw(BAD_KEYS if bad_keys else GOOD_KEYS)
        count = draw(BAD_COUNTS if bad_count else GOOD_COUNTS)
        items.append(keys + count)
        wrong |= bad_keys or bad_count
    return ",".join(items), wrong


def action_cases(rng, count):
    for text, wrong in hypothesis_cases(action_strings(), count, int(rng.integers(2**31))):
        yield Case(text, text[:40], names="action string", wrong=wrong, valid=not wrong)
    yield Case("w*10000", "the longest path allowed", valid=True)


def check_path(c2w: np.ndarray) -> str | None:
    if (len(c2w) - 1) % ActionConfig().frames_per_step:
        return f"{len(c2w)} poses is not 1 + frames_per_step * steps"
    return check_poses(c2w)


def test_fuzz_action_strings(fuzz):
    fuzz(Target("action_strings", action_cases, actions_to_c2w, check_path), ci=150, long=3000, time_limit=10.0)
