"""Attention benchmark at the wan1_3b shapes: our block-sparse Pallas kernel against dense baselines.

Cases (12 heads of 128, 1560 tokens per latent frame, chunks of 3 frames):
  * teacher: 21 frames, bidirectional (unmasked: compares raw kernel speed with the libraries);
  * train_wN: 21 frames block-causal over 7 chunks with a window of N chunks (3, 5, 7) and one sink chunk;
  * stream_fF: one 3-frame chunk over a 21-frame cache that is F% valid (sink + recent frames), plus itself.
Implementations: `pallas` (ours), `xla` (dense mask), `cudnn` (jax.nn.dot_product_attention with the
mask made dense), `tokamax` (if installed; dense mask except where a case is unmasked). Each row
prints the median time, TFLOP/s counting only unmasked (query, key) pairs (forward 4·pairs·d·heads,
forward+backward 3.5x that), and the share of the GPU's dense bf16 peak.

    python launch/bench_attention.py                 # on a GPU
    python launch/bench_attention.py --small         # tiny shapes; runs on CPU (interpreted kernel)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from worldscape_jax.kernels.block_mask import visible_keys_per_row
from worldscape_jax.models.attention import MaskSpec, attention, cached_attention, dot_product_attention

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "GH200": 989.0, "A100": 312.0, "B200": 2250.0,
                    "L40S": 362.0, "L4": 121.0}


@dataclasses.dataclass(frozen=True)
class Scale:
    heads: int
    head_dim: int
    frame_tokens: int
    chunk_frames: int = 3
    frames: int = 21


FULL = Scale(heads=12, head_dim=128, frame_tokens=1560)
SMALL = Scale(heads=2, head_dim=64, frame_tokens=16)


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    mask: MaskSpec | None  # None: streaming (cache + chunk)
    valid_fraction: float = 1.0


def cases(scale: Scale) -> list[Case]:
    chunk = scale.chunk_frames * scale.frame_tokens
    out = [Case("teacher", MaskSpec())]
    out += [Case(f"train_w{w}", MaskSpec.block_causal(chunk, window=w, sink=1)) for w in (3, 5, 7)]
    out += [Case(f"stream_f{int(f * 100)}", None, f) for f in (0.43, 1.0)]
    return out


def peak_tflops(device) -> float | None:
    """Dense bf16 tensor-core peak of the device from its name (e.g. "NVIDIA H100 80GB HBM3"), if known."""
    kind = getattr(device, "device_kind", "")
    peak = PEAK_BF16_TFLOPS.get(kind.replace("NVIDIA ", "").split(" ")[0])
    if peak is not None and "PCIe" in kind:
        peak *= 756.0 / 989.0 if kind.startswith("NVIDIA H100") else 1.0
    return peak


def _inputs(scale: Scale, case: Case, key):
    """q, k, v (and for streaming the cache and its validity) in bf16."""
    n_seq = scale.frames * scale.frame_tokens
    n_chunk = scale.chunk_frames * scale.frame_tokens
    shape = lambda n: (1, n, scale.heads, scale.head_dim)  # noqa: E731
    ks = jax.random.split(key, 5)
    rand = lambda k, n: jax.random.normal(k, shape(n), jnp.bfloat16)  # noqa: E731
    if case.mask is not None:
        return dict(q=rand(ks[0], n_seq), k=rand(ks[1], n_seq), v=rand(ks[2], n_seq))
    valid_frames = round(case.valid_fraction * scale.frames)
    sink = scale.chunk_frames  # first chunk kept, then the most recent frames: a rolling window with a sink
    frame_valid = np.zeros(scale.frames, bool)
    frame_valid[:sink] = True
    frame_valid[scale.frames - max(valid_frames - sink, 0):] = True
    cache_valid = jnp.asarray(np.repeat(frame_valid, scale.frame_tokens)[None])
    return dict(q=rand(ks[0], n_chunk), k=rand(ks[1], n_chunk), v=rand(ks[2], n_chunk),
                cache_k=rand(ks[3], n_seq), cache_v=rand(ks[4], n_seq), cache_valid=cache_valid)


def unmasked_pairs(case: Case, x) -> int:
    if case.mask is not None:
        n = x["q"].shape[1]
        return int(visible_keys_per_row(case.mask, None, 1, n, n).sum())
    return int(x["q"].shape[1] * (x["k"].shape[1] + int(x["cache_valid"].sum())))


def _call(impl: str, case: Case):
    """A function of the inputs dict computing the case with one implementation."""
    if impl == "tokamax":
        import tokamax  # optional

        def run_tokamax(x):
            if case.mask is not None:
                n = x["q"].shape[1]
                dense = None if case.mask.kind == "full" else case.mask.dense(n, n)[None, None]
                return tokamax.dot_product_attention(x["q"], x["k"], x["v"], mask=dense)
            keys = jnp.concatenate([x["cache_k"], x["k"]], 1)
            values = jnp.concatenate([x["cache_v"], x["v"]], 1)
            valid = jnp.concatenate([x["cache_valid"], jnp.ones(x["k"].shape[:2], bool)], 1)
            return tokamax.dot_product_attention(x["q"], keys, values, mask=valid[:, None, None, :])

        return run_tokamax
    if impl == "cudnn":
        if case.mask is not None:
            return lambda x: dot_product_attention(x["q"], x["k"], x["v"], case.mask, None, x["q"].shape[-1] ** -0.5)
        return lambda x: cached_attention(**x, impl="cudnn")
    if case.mask is not None:
        return lambda x: attention(x["q"], x["k"], x["v"], case.mask, impl=impl)
    return lambda x: cached_attention(**x, impl=impl)


def _timed(fn, x, iters: int) -> float:
    """Median milliseconds over `iters` runs after one warm-up (compile) run."""
    jax.block_until_ready(fn(x))
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _with_backward(call, case: Case):
    """Forward + backward through q, k, v (training cases only)."""
    def loss(q, k, v, rest):
        return jnp.sum(call(dict(rest, q=q, k=k, v=v)).astype(jnp.float32))

    grad = jax.grad(loss, argnums=(0, 1, 2))
    return lambda x: grad(x["q"], x["k"], x["v"], {n: a for n, a in x.items() if n not in "qkv"})


def run(args) -> list[dict]:
    scale = SMALL if args.small else FULL
    device = jax.devices()[0]
    on_gpu = device.platform == "gpu"
    peak = peak_tflops(device) if on_gpu else None
    print(f"device: {device.device_kind} ({device.platform}); dense bf16 peak: "
          f"{f'{peak:.0f} TFLOP/s' if peak else 'unknown'}")
    if not on_gpu:
        print("NO GPU PRESENT: timings below are CPU figures (the Pallas kernel runs interpreted); they say "
              "nothing about GPU speed. cudnn and tokamax need a GPU and are skipped.")
    impls = [i for i in args.impls.split(",") if i]
    rows = []
    todo = [(c, i, bwd) for c in cases(scale) for bwd in ((False, True) if args.backward else (False,))
            for i in impls if not (bwd and c.mask is None)]
    for case, impl, backward in tqdm(todo, desc="attention bench", unit="run"):
        _save(rows, args.json)  # row by row: a run stopped by a timeout keeps what it measured
        label = f"{case.name:<12} {'fwd+bwd' if backward else 'fwd':<7} {impl:<8}"
        if impl in ("cudnn", "tokamax") and not on_gpu:
            rows.append(dict(case=case.name, impl=impl, backward=backward, status="skipped: needs a GPU"))
            tqdm.write(f"{label} skipped: needs a GPU")
            continue
        x = _inputs(scale, case, jax.random.key(0))
        flops = 4 * unmasked_pairs(case, x) * scale.head_dim * scale.heads * (3.5 if backward else 1.0)
        try:
            call = _call(impl, case)  # tokamax may be missing: reported, not fatal
            fn = jax.jit(_with_backward(call, case) if backward else call)
            ms = _timed(fn, x, args.iters)
        except Exception as error:  # noqa: BLE001  (OOM of a dense baseline is a result, not a crash)
            rows.append(dict(case=case.name, impl=impl, backward=backward, status=f"failed: {str(error)[:120]}"))
            tqdm.write(f"{label} failed: {str(error)[:120]}")
            continue
        tflops = flops / (ms * 1e-3) / 1e12
        share = f"{100 * tflops / peak:5.1f}% of peak" if peak else "peak n/a"
        rows.append(dict(case=case.name, impl=impl, backward=backward, ms=ms, tflops=tflops, status="ok"))
        tqdm.write(f"{label} {ms:10.3f} ms  {tflops:10.4f} TFLOP/s (unmasked work)  {share}")
    _save(rows, args.json)
    _print_ratios(rows)
    return rows


def _save(rows: list[dict], path: str | None):
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)


def _print_ratios(rows: list[dict]):
    """Per case: our time against each baseline measured in this run."""
    ok = {(r["case"], r["backward"], r["impl"]): r["ms"] for r in rows if r["status"] == "ok"}
    print("\nspeed-up of pallas (baseline time / pallas time):")
    for (case, backward, impl), ms in sorted(ok.items()):
        ours = ok.get((case, backward, "pallas"))
        if impl != "pallas" and ours:
            print(f"  {case:<12} {'fwd+bwd' if backward else 'fwd':<7} vs {impl:<8} {ms / ours:6.2f}x")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (sys.argv[1:] when `argv` is None); exits with a usage message on a bad flag."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="tiny shapes (2 heads of 64, 16 tokens per frame)")
    parser.add_argument("--iters", type=int, default=10, help="timed runs per row (median reported)")
    parser.add_argument("--impls", default="pallas,xla,cudnn,tokamax", help="comma-separated implementations")
    parser.add_argument("--backward", action=argparse.BooleanOptionalAction, default=True,
                        help="also time forward+backward on the teacher/training cases")
    parser.add_argument("--json", help="write the rows to this JSON file")
    return parser.parse_args(argv)


def main():
    args = parse_args()
    run(args)


if __name__ == "__main__":
    main()
