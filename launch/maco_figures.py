"""The paper's Figures 7 and 8 (appendix A.2) for MACO on a reversed orbit, from a real model's keys.

  pip install -e ".[figures]"   # matplotlib
  python launch/maco_figures.py                                   # docs/maco_reversed_orbit.png, docs/maco_pool.png
  python launch/maco_figures.py --chunks=48 --tau_mdl=0.95 --out_dir=runs/maco_figures

A held-out SynthWorld scene is rendered along a reversed orbit (an orbit around the scene's centre,
then back along the same arc) and VAE-encoded; each latent frame (one chunk at tiny) goes through the
committed tiny teacher's DiT at t = 0, and MACO is replayed along the path with those keys
(streaming/revisit.py). Until a trained student exists these are the teacher's keys, with its
conditioning and camera inputs zeroed (the dropout mode it was trained with), so they carry the content
of the frames alone; the gate reads the first layer's keys, which the context does not change.
Figure 7: the path from above at a few steps, with the query,
sink, local window, pool and selected memory. Figure 8: the pool at every step, with the gate's
admissions and rejections and FPS's prunings, and the gate score against tau_mdl.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import app, flags

from worldscape_jax import cli

_TEACHER = flags.DEFINE_string("teacher", "asset:teacher_tiny", "Exported teacher whose DiT makes the keys.")
_SCENE = flags.DEFINE_integer("scene", 0, "Index of the held-out SynthWorld scene.")
_CHUNKS = flags.DEFINE_integer("chunks", 40, "Chunks (latent frames) in the stream; half out, half back.")
_DEGREES = flags.DEFINE_float("degrees", 180.0, "Arc of the orbit before it reverses.")
_TAU = flags.DEFINE_float("tau_mdl", None, "Admission threshold (default: MacoConfig's).")
_PANELS = flags.DEFINE_list("panels", ["7", "12", "17", "22", "27", "32", "36", "39"], "Steps drawn in Figure 7.")
_OUT = flags.DEFINE_string("out_dir", "docs", "Where the two PNGs go.")

COLORS = dict(path="#c8c8c8", query="#f2b705", sink="#2e9e44", local="#2f6fd6", pool="#d64541", memory="#d64541")


def draw_reversed_orbit(records, positions, views, panels, config, path: str) -> None:
    """Figure 7: the path from above (x right, z up the page) at the chosen steps.

    `positions` may be display positions (the return leg drawn inside the outbound one, see main).
    """
    import matplotlib.pyplot as plt

    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.5 * rows), squeeze=False)
    x, z = positions[:, 0], positions[:, 2]
    pad = 0.15 * max(np.ptp(x), np.ptp(z))
    for ax, step in zip(axes.flat, panels):
        r = records[step]
        ax.plot(x, z, "-", color=COLORS["path"], lw=1, zorder=0)
        ax.plot(x[:step + 1], z[:step + 1], ".", color="#9a9a9a", ms=3, zorder=1)
        pool_only = [f for f in r["pool"] if f not in r["memory"]]
        marks = [(pool_only, "o", COLORS["pool"], "none", 60, "pool (not selected)"),
                 (r["local"], "o", COLORS["local"], COLORS["local"], 30, "local window"),
                 ([r["sink"]] if r["sink"] is not None else [], "s", COLORS["sink"], COLORS["sink"], 60, "sink"),
                 (r["memory"], "*", COLORS["memory"], COLORS["memory"], 200, "selected memory"),
                 ([step], "*", "black", COLORS["query"], 260, "current query")]
        for frames, marker, edge, face, size, label in marks:
            if frames:
                ax.scatter(x[frames], z[frames], marker=marker, s=size, edgecolors=edge, facecolors=face,
                           linewidths=1.2, label=label, zorder=3)
        ax.quiver(x[step], z[step], views[step, 0], views[step, 2], color="black", scale=6, width=0.012, zorder=4)
        ax.set_title(f"chunk {step}", fontsize=10)
        ax.set_aspect("equal")
        ax.set_xlim(x.min() - pad, x.max() + pad)
        ax.set_ylim(z.min() - pad, z.max() + pad)
        ax.set_xticks([]), ax.set_yticks([])
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = {}, []
    for ax in axes.flat:
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=5, frameon=False, fontsize=9)
    fig.suptitle(f"MACO on a reversed orbit (local {config.local}, budget {config.budget}, select {config.select}; "
                 f"the arrow is the query's view;\nthe return leg is drawn inside the outbound one)", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_pool(records, config, path: str) -> None:
    """Figure 8: per step, the pool's entries (by the chunk they hold), admissions, rejections, prunings."""
    import matplotlib.pyplot as plt

    fig, (ax, gate) = plt.subplots(2, 1, figsize=(11, 6.4), sharex=True, gridspec_kw=dict(height_ratios=[3, 1.3]))
    steps = [r["step"] for r in records]
    points = {"in pool": [], "selected for this step": [], "admitted": [], "rejected": [], "pruned": []}
    for r in records:
        s = r["step"]
        points["in pool"] += [(s, f) for f in r["pool"]]
        points["selected for this step"] += [(s, f) for f in r["memory"]]
        if r["left"] >= 0:  # a chunk left the window: rejected, admitted, or admitted and pruned at once
            kind = "rejected" if not r["admitted"] else "pruned" if r["pruned"] == r["left"] else "admitted"
            points[kind].append((s, r["left"]))
        if r["pruned"] >= 0 and r["pruned"] != r["left"]:
            points["pruned"].append((s, r["pruned"]))
    styles = {"in pool": dict(marker="s", s=70, c="#d9d9d9", edgecolors="#7a7a7a"),
              "selected for this step": dict(marker="*", s=110, c=COLORS["memory"]),
              "admitted": dict(marker="^", s=70, c=COLORS["sink"]),
              "rejected": dict(marker="x", s=60, c="black"),
              "pruned": dict(marker="v", s=70, c="#8e44ad")}
    for name, pts in points.items():
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, label=name, zorder=3 if name != "in pool" else 2, **styles[name])
    ax.plot(steps, steps, ":", color="#bbbbbb", lw=1, label="the step's own chunk")
    ax.set_ylabel("chunk held (its first latent frame)")
    ax.set_title(f"MACO pool during the stream (budget {config.budget}, select {config.select}, "
                 f"tau_mdl {config.tau_mdl}): a column is a step", fontsize=11)
    ax.legend(loc="upper left", fontsize=8, ncol=3, frameon=False)
    ax.grid(alpha=0.3)
    gated = [(r["step"], r["s_mdl"]) for r in records if r["left"] >= 0 and np.isfinite(r["s_mdl"])]
    if gated:
        xs, ys = zip(*gated)
        gate.plot(xs, ys, "o-", ms=3, color="#555555", label="S_mdl of the chunk leaving the window")
    gate.axhline(config.tau_mdl, color=COLORS["pool"], ls="--", lw=1, label="tau_mdl (admit below)")
    gate.set_xlabel("step (chunk being generated)")
    gate.set_ylabel("S_mdl")
    gate.legend(loc="upper left", fontsize=8, frameon=False)
    gate.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        import matplotlib
        matplotlib.use("Agg")
    except ImportError as error:
        raise SystemExit("launch/maco_figures.py draws with matplotlib: pip install -e '.[figures]'") from error
    from worldscape_jax.data.synthworld import clips
    from worldscape_jax.inference.loading import load_exported, load_vae
    from worldscape_jax.streaming import maco, revisit

    panels = [int(p) for p in _PANELS.value]
    if _CHUNKS.value < 8 or any(not 0 <= p < _CHUNKS.value for p in panels):
        raise app.UsageError(f"--chunks must be >= 8 and every --panels step in [0, {_CHUNKS.value}), got {panels}")
    config = maco.MacoConfig()
    if _TAU.value is not None:
        config = dataclasses.replace(config, tau_mdl=_TAU.value)
    params, teacher_config = load_exported(_TEACHER.value, stage="teacher")
    vae = load_vae(teacher_config.vae.checkpoint, teacher_config.vae.preset)
    d = teacher_config.data
    seed = revisit.heldout_seed(_SCENE.value)
    clip = revisit.render_clip(seed, revisit.revisit_path("reversed_orbit", _CHUNKS.value, seed, _DEGREES.value),
                               d.height, d.width)
    poses = clip["c2w"][0::revisit.PIXELS_PER_CHUNK]
    ks, vs = revisit.chunk_keys(params, teacher_config, vae, clip)
    records = revisit.replay(maco.MacoPolicy(config, frames_per_chunk=1), ks, vs, poses)
    # The return leg retraces the outbound one; draw it 8% closer to the orbit's centre so both show.
    center = clips.start_pose(seed)[:3, 3]
    returning = (revisit.PIXELS_PER_CHUNK * np.arange(len(poses)) >= (len(clip["c2w"]) + 1) // 2)[:, None]
    display = np.where(returning, center + 0.92 * (poses[:, :3, 3] - center), poses[:, :3, 3])
    os.makedirs(_OUT.value, exist_ok=True)
    figure7, figure8 = os.path.join(_OUT.value, "maco_reversed_orbit.png"), os.path.join(_OUT.value, "maco_pool.png")
    draw_reversed_orbit(records, display, poses[:, :3, 2], panels, config, figure7)
    draw_pool(records, config, figure8)
    gated = np.array([r["s_mdl"] for r in records if r["left"] >= 0 and np.isfinite(r["s_mdl"])])
    print(f"wrote {figure7} and {figure8}")
    print(f"{sum(r['left'] >= 0 for r in records)} chunks left the window: "
          f"{sum(r['admitted'] for r in records)} admitted, {sum(r['pruned'] >= 0 for r in records)} pruned; "
          f"S_mdl against a non-empty pool: min {gated.min():.3f} median {np.median(gated):.3f} max {gated.max():.3f}")


if __name__ == "__main__":
    cli.run(main)
