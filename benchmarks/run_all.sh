#!/usr/bin/env bash
# Run every CPU benchmark one after another (run it on a quiet machine: nothing else busy) and keep
# each printed table in benchmarks/results/<script>.txt. About 40 min on 2 cores, plus about an hour for
# hunyuan_transformer (40 blocks at 1024²: ~3 min a forward, estimated from a 4-block run) and 45 min for
# plan_validation (the memory planner against measured peaks).
# The GPU scripts (pixart_gpu.py, pixart_gpu_hires.py) are separate: they need a CUDA card.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
for script in dit_forward pixart_transformer sd3_transformer hunyuan_transformer t5_encoder vae_decode attention_memory \
        stdit_forward plan_validation; do
    echo "== $script"
    python "benchmarks/$script.py" "$@" 2>&1 | tee "benchmarks/results/$script.txt"
done
# sliding-window denoising: several configurations in one results file (about 30 min on 2 cores)
echo "== windowed_denoise"
{
    echo "== sdpa, latent 64, window 32"; python benchmarks/windowed_denoise.py --overlaps 0,8,16 "$@"
    echo; echo "== sdpa, latent 64, window 32, all windows of a step in one call"
    python benchmarks/windowed_denoise.py --overlaps 0,8 --per-call 9 "$@"
    echo; echo "== manual attention, latent 64, window 32"; python benchmarks/windowed_denoise.py --overlaps 0,8 --backend manual "$@"
    echo; echo "== sdpa, latent 128, window 64"
    python benchmarks/windowed_denoise.py --latent 128 --window 64 --overlaps 0,16 --repeats 2 "$@"
} 2>&1 | tee benchmarks/results/windowed_denoise.txt
