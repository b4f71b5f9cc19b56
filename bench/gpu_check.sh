#!/usr/bin/env bash
# The whole GPU check in one call, for a machine that has a GPU but no Rust toolchain.
#
#   bash bench/gpu_check.sh ./minus-cuda          # on the GPU machine, from the repository root
#   DEVICE=cpu bash bench/gpu_check.sh target/release/minus   # a dry run of the script here
#
# 1. Correctness: the reference cases of tests/fixtures (diffusers' f32 outputs) generated on the
#    device in f32 and f16, each compared with diffusers' picture (mean and max |difference|).
# 2. Speed: `minus bench` at 512² (SIZE), IP-Adapter Plus, 25 steps (STEPS), in f16 and f32,
#    with one UNet step timed layer kind by layer kind.
# 3. diffusers on the same weights and shapes (bench/compare_diffusers.py), if it imports.
# 4. Peak GPU memory from an nvidia-smi trace taken during all of it.
# Everything is written under $OUT (default ./gpu-check); the summary is also printed.
set -uo pipefail

binary=${1:?usage: bench/gpu_check.sh MINUS_BINARY}
device=${DEVICE:-cuda}
out=${OUT:-./gpu-check}
steps=${STEPS:-25}
repeats=${REPEATS:-5}
size=${SIZE:-512}
weights=${WEIGHTS_DIR:-/tmp/minus-bench-weights}  # 6.5 GB: never under $OUT
fixtures=tests/fixtures
mkdir -p "$out/parity" "$weights"

if [[ $device == cuda ]]; then
  # Finds the CUDA 13 libraries and prints the GPU (see ../shared/gpu); the last line it prints
  # is the library path, exported here so that compare_diffusers.py's run of Minus has it too.
  bash ../shared/gpu/with-cuda-libs.sh /usr/bin/printenv LD_LIBRARY_PATH | tee "$out/cuda-libs.txt"
  LD_LIBRARY_PATH=$(tail -1 "$out/cuda-libs.txt")
  export LD_LIBRARY_PATH
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 >"$out/gpu-memory-mib.csv" &
  smi=$!
  trap 'kill $smi 2>/dev/null' EXIT
fi
minus() { "$binary" "$@"; }

models=$fixtures/models
adapters=$models/ip-adapter/models
common=(--model "$models/sd15" --image-encoder "$adapters/image_encoder" --device "$device")

# name, then the arguments that reproduce tests/fixtures/cases/<name> (see cases.json).
case_args() {
  case $1 in
    base_posneg_ddim)
      echo --ip-adapter "$adapters/ip-adapter_sd15.safetensors" \
        --image "$fixtures/images/house.png" --negative-image "$fixtures/images/lawn.png" \
        --scheduler ddim --steps 8 --cfg 7.5 --width 128 --height 96 --seed 42 ;;
    plus_window_weights_ddim)
      echo --ip-adapter "$adapters/ip-adapter-plus_sd15.safetensors" \
        --image "$fixtures/images/house.png" --negative-image "$fixtures/images/lawn.png" \
        --ip-weight 0.8 --negative-ip-weight 0.5 --ip-start 0.2 --ip-end 0.7 \
        --scheduler ddim --steps 10 --cfg 7 --width 112 --height 144 --seed 3 ;;
    plus_pos_euler_a)
      echo --ip-adapter "$adapters/ip-adapter-plus_sd15.safetensors" \
        --image "$fixtures/images/sticker_rgba.png" --ip-weight 0.7 \
        --scheduler euler-a --steps 6 --cfg 6 --width 96 --height 128 --seed 7 ;;
  esac
}
# The prompts hold spaces, so they are passed apart from the word lists above.
case_prompts() {
  case $1 in
    plus_window_weights_ddim) prompts=(--prompt "a house" --negative-prompt "ugly") ;;
    plus_pos_euler_a) prompts=(--prompt "a cozy cottage in the woods, oil painting"
      --negative-prompt "blurry, low quality") ;;
    *) prompts=() ;;
  esac
}

echo "== 1. reference cases on $device"
for name in base_posneg_ddim plus_window_weights_ddim plus_pos_euler_a; do
  case_prompts "$name"
  for dtype in f32 f16; do
    # shellcheck disable=SC2046 # the case's arguments are words without spaces
    minus generate "${common[@]}" $(case_args "$name") "${prompts[@]}" --dtype "$dtype" \
      --output "$out/parity/$name-$dtype.png" >"$out/parity/$name-$dtype.log" 2>&1 ||
      { echo "$name $dtype FAILED:"; tail -5 "$out/parity/$name-$dtype.log"; }
  done
done
python3 - "$out/parity" "$fixtures/cases" <<'PY' | tee "$out/parity/summary.txt" || echo "(no python3 with numpy and Pillow: compare the PNGs in $out/parity by hand)"
import pathlib, sys
import numpy as np
from PIL import Image
ours, cases = map(pathlib.Path, sys.argv[1:])
for png in sorted(ours.glob("*.png")):
    name = png.stem.rsplit("-", 1)[0]
    a = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(cases / name / "out.png").convert("RGB"), dtype=np.int16)
    d = np.abs(a - b)
    print(f"{png.stem:32s} mean |diff| {d.mean():.4f}/255  max {d.max()}/255")
PY

echo "== 2. minus bench on $device"
for dtype in f16 f32; do
  minus bench --device "$device" --dtype "$dtype" --size "$size" --steps "$steps" --repeats "$repeats" \
    --weights-dir "$weights" --layers --json "$out/minus-$dtype.json" 2>&1 | tee "$out/minus-$dtype.txt"
done

echo "== 3. diffusers on the same weights"
if python3 -c "import diffusers, torch" 2>/dev/null; then
  python3 bench/compare_diffusers.py --minus "$binary" --device "$device" --size "$size" \
    --steps "$steps" --repeats "$repeats" --weights-dir "$weights" 2>&1 | tee "$out/compare.txt"
else
  echo "(diffusers does not import here: skipped)"
fi

if [[ $device == cuda ]]; then
  kill "$smi" 2>/dev/null
  echo "== 4. peak GPU memory while all of the above ran (all processes): $(sort -n "$out/gpu-memory-mib.csv" | tail -1) MiB"
fi
