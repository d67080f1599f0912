#!/usr/bin/env bash
# Every GPU measurement of the project in one call of under 8 minutes, for the first session lent a GPU.
#
#   bash launch/gpu_check.sh                       # figures -> $OUT/gpu_check.json (+ gpu_check.log beside it)
#   bash launch/gpu_check.sh /tmp/gc/gpu_check.json
#   bash launch/gpu_check.sh --dry_run [PATH]      # the same steps at CPU sizes (tiny shapes, wan1_3b traced only)
#   bash launch/gpu_check.sh --print_commands      # the GPU command of each step, "name<TAB>command" per line
#   GPU_CHECK_ONLY=dit_xla,teacher_train bash launch/gpu_check.sh   # only these steps (e.g. a rerun)
#
# Runs from the repository root with the interpreter on PATH (`python`, else `python3`: the device machine's
# JAX with CUDA; no package registry, so nothing is installed from the internet). The packages its image
# lacks (ml-collections, grain, array-record, portpicker) travel as wheels: `bash launch/gpu_wheels.sh`
# here fills .whl/, the device call carries it (carry=[".whl"]), and this script installs them --no-index.
# Steps, in order (each bounded by `timeout`; a failure or timeout is recorded and the next step runs):
#   attention      launch/bench_attention.py at wan1_3b shapes: pallas vs xla, cudnn, tokamax (if importable)
#   dit_<impl>     launch/bench_dit.py --scale=wan1_3b, bf16, 832x480, attention cudnn / pallas / xla
#   stream_<mem>   launch/bench_stream.py --scale=wan1_3b, 20 chunks, VAE decode included, rolling / maco
#   teacher_train  launch/bench_train.py, configs/teacher.py:wan1_3b, batch 1, synthetic data: step time, MFU
# The whole run stops starting steps when GPU_CHECK_BUDGET_S (default 450) seconds are spent, and each
# step's timeout is cut to what is left. Output: one JSON with each step's status (ok | failed | timed_out
# | skipped), exit code, wall time, figures (the bench's own --json) and the tail of its log; the full
# log is gpu_check.log beside the JSON. Two files, so they fit what the device tool brings back.
set -uo pipefail

dry_run=0
print_commands=0
json_path=""
for arg in "$@"; do
  case "$arg" in
    --dry_run) dry_run=1 ;;
    --print_commands) print_commands=1 ;;
    -*) echo "gpu_check.sh: unknown flag $arg (expected --dry_run, --print_commands or an output path)" >&2; exit 2 ;;
    *) json_path="$arg" ;;
  esac
done

# name | per-step timeout (s) | GPU command | what --dry_run appends to it (CPU sizes; absl and argparse: the
# last value of a flag wins), or with a leading "=" the CPU command that replaces it
STEPS=(
  "attention|90|python launch/bench_attention.py --impls=pallas,xla,cudnn,tokamax --iters=5 --json=@JSON@|--small --iters=1 --no-backward --impls=xla,cudnn"
  "dit_cudnn|75|python launch/bench_dit.py --scale=wan1_3b --dtype=bfloat16 --attention=cudnn --repeats=3 --json=@JSON@|--scale=tiny --repeats=1 --attention=xla"
  "stream_rolling|75|python launch/bench_stream.py --scale=wan1_3b --memory=rolling --chunks=20 --window=5 --json=@JSON@|--dry_run"
  "stream_maco|75|python launch/bench_stream.py --scale=wan1_3b --memory=maco --chunks=20 --window=5 --json=@JSON@|--dry_run"
  "teacher_train|100|python launch/bench_train.py --config=configs/teacher.py:wan1_3b --config.global_batch=1 --config.model.attention_impl=cudnn --config.model.remat_policy=full --synthetic_data --steps=3 --warmup=1 --json=@JSON@|=python launch/bench_train.py --config=configs/teacher.py:tiny --config.global_batch=1 --synthetic_data --steps=1 --warmup=0 --json=@JSON@"
  "dit_pallas|60|python launch/bench_dit.py --scale=wan1_3b --dtype=bfloat16 --attention=pallas --repeats=3 --json=@JSON@|--scale=tiny --repeats=1 --attention=xla"
  "dit_xla|60|python launch/bench_dit.py --scale=wan1_3b --dtype=bfloat16 --attention=xla --repeats=3 --json=@JSON@|--scale=tiny --repeats=1"
)

if [ "$print_commands" = 1 ]; then
  for entry in "${STEPS[@]}"; do
    IFS='|' read -r name _ command _ <<<"$entry"
    printf '%s\t%s\n' "$name" "$command"
  done
  exit 0
fi

if [ -z "$json_path" ]; then
  json_path="${OUT:-out/gpu_check}/gpu_check.json"
fi
mkdir -p "$(dirname "$json_path")"
log_path="${json_path%.json}.log"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$log_path"
budget_s=${GPU_CHECK_BUDGET_S:-450}
py=python
command -v python >/dev/null 2>&1 || py=python3
started=$SECONDS
export PYTHONUNBUFFERED=1

say() { echo "[gpu_check $(date -u +%H:%M:%S)] $*" | tee -a "$log_path"; }

if [ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null; then
  say "installing carried wheels from .whl/ (--no-index) into $work/site"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" .whl/*.whl \
    >>"$log_path" 2>&1 && export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}" || say "warning: wheel install failed"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the repository, in case the project is not pip-installed

if [ "$dry_run" = 1 ]; then
  export JAX_PLATFORMS=cpu
  say "dry run: CPU sizes, no GPU needed"
else
  say "preflight: python -c 'import jax; print(jax.devices())'"
  if ! timeout 60 $py -c "import jax; print(jax.devices()); import sys; sys.exit(0 if jax.default_backend() == 'gpu' else 3)" \
      >>"$log_path" 2>&1; then
    say "NO GPU: jax sees no GPU (or failed to import); nothing measured. See $log_path."
    python3 - "$json_path" "$log_path" <<'EOF'
import json, sys
log = open(sys.argv[2]).read()
json.dump({"status": "no_gpu", "message": "jax.devices() shows no GPU; nothing was measured", "log_tail": log[-3000:]},
          open(sys.argv[1], "w"), indent=1)
EOF
    exit 3
  fi
  tail -n 1 "$log_path"
fi

# Writes the JSON from the steps' status files; called after every step, so a run cut short keeps its figures.
aggregate() {
python3 - "$json_path" "$work" "$dry_run" "$1" "${STEPS[@]}" <<'EOF'
import json, os, sys

json_path, work, dry_run, final, entries = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1", sys.argv[5:]
steps = {}
for entry in entries:
    name = entry.split("|")[0]
    status_path = os.path.join(work, f"{name}.status")
    if not os.path.exists(status_path):
        steps[name] = {"status": "not_run", "reason": "the run stopped before this step"}
        continue
    status = open(status_path).read().strip()
    if status in ("skipped", "not_selected"):
        reason = "the run's time budget was spent" if status == "skipped" else "not in GPU_CHECK_ONLY"
        steps[name] = {"status": "skipped", "reason": reason}
        continue
    rc, wall_s, command = status.split(" ", 2)
    rc = int(rc)
    figures_path = os.path.join(work, f"{name}.json")
    try:
        figures = json.load(open(figures_path)) if os.path.exists(figures_path) else None
    except json.JSONDecodeError as error:  # a bench killed while writing its figures
        figures = {"unreadable": str(error)}
    log = open(os.path.join(work, f"{name}.log"), errors="replace").read()
    steps[name] = {"status": "ok" if rc == 0 else "timed_out" if rc in (124, 137) else "failed", "exit_code": rc,
                   "wall_s": int(wall_s), "command": command, "figures": figures, "log_tail": log[-2500:]}
ok = sum(s["status"] == "ok" for s in steps.values())
ran = sum(s["status"] not in ("skipped", "not_run") for s in steps.values())
json.dump({"status": f"{ok}/{ran} steps ok, {len(steps) - ran} skipped", "dry_run": dry_run, "steps": steps}, open(json_path, "w"),
          indent=1, default=str)
if final:
  print(f"[gpu_check] {ok}/{ran} steps ok, {len(steps) - ran} skipped; figures in {json_path}")
  for name, s in steps.items():
    print(f"  {name:<15} {s['status']:<9} {s.get('wall_s', '')}")
EOF
}

for entry in "${STEPS[@]}"; do
  IFS='|' read -r name limit command dry_extra <<<"$entry"
  if [ -n "${GPU_CHECK_ONLY:-}" ] && [[ ",$GPU_CHECK_ONLY," != *",$name,"* ]]; then
    echo "not_selected" >"$work/$name.status"
    continue
  fi
  if [ "$dry_run" = 1 ]; then
    if [ "${dry_extra:0:1}" = "=" ]; then command="${dry_extra:1}"; else command="$command $dry_extra"; fi
  fi
  command="${command//@JSON@/$work/$name.json}"
  command="$py ${command#python }"
  left=$((budget_s - (SECONDS - started)))
  if [ "$left" -lt 20 ]; then
    say "$name: skipped (budget of ${budget_s}s spent)"
    echo "skipped" >"$work/$name.status"
    continue
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "$name (timeout ${limit}s): $command"
  step_start=$SECONDS
  timeout --kill-after=10 "$limit" $command >"$work/$name.log" 2>&1
  rc=$?
  cat "$work/$name.log" >>"$log_path"
  echo "$rc $((SECONDS - step_start)) $command" >"$work/$name.status"
  say "$name: exit $rc after $((SECONDS - step_start))s"
  aggregate 0
done

aggregate 1
