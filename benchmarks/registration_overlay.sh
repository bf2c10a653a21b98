#!/usr/bin/env bash
# The README's before/after registration overlay: one synthetic clip on skimage's astronaut whose head moves 8 px
# and turns (synth --head-motion), cached without and with registration (the default, consensus), drawn by
# `mertool cache show`.
# The pictures go to $out (never over the tracked benchmarks/*.png); copy them there yourself to update the README's.
set -euo pipefail
out=${1:-/tmp/mertool-overlay}
mertool synth "$out/data" --subjects 1 --per-subject 1 --seed 5 --head-motion 8 --workers 1 --quiet
mertool preprocess "$out/data" --out "$out/none.h5" --register none --workers 0 --quiet > /dev/null
mertool preprocess "$out/data" --out "$out/registered.h5" --workers 0 --quiet > /dev/null
mertool cache show "$out/none.h5" 0 --png "$out/registration_before.png" --dpi 60
mertool cache show "$out/registered.h5" 0 --png "$out/registration_after.png" --dpi 60
