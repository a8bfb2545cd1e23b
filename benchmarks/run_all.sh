#!/usr/bin/env bash
# Every benchmark, one after another, then the README's tables rewritten from what they printed:
#
#     bash benchmarks/run_all.sh            # run it on a quiet machine: nothing else busy
#
# Each script's printed table goes to benchmarks/results/<script>.txt, and benchmarks/readme_tables.py copies
# those tables into README.md's results blocks (`<!-- results FILE -->`). On 2 CPU cores, roughly: 40 min for
# the model forwards, an hour for hunyuan_transformer (40 blocks at 1024²), 45 min for plan_validation, 30 min
# for windowed_denoise, and load_memory / pipeline_memory write ~25 GB of random full-size checkpoints to
# /tmp/minidit-bench first (an hour with the pipeline runs). On a machine with a CUDA card the GPU benchmarks
# run as well (pixart_gpu.py per attention path and dtype, pixart_gpu_hires.py up to 4096²; diffusers must be
# installed for their ratios); without one they are skipped and their README blocks say "not measured yet".
# Extra arguments go to every CPU model benchmark (e.g. --repeats 1).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
run() {  # run NAME SCRIPT [ARGS...]: the script's output, also kept in benchmarks/results/NAME.txt
    local name=$1; shift
    echo "== $name"
    python "$@" 2>&1 | tee "benchmarks/results/$name.txt"
}
for script in dit_forward pixart_transformer t5_encoder vae_decode attention_memory; do
    run "$script" "benchmarks/$script.py" "$@"
done
run sd3_transformer benchmarks/sd3_transformer.py --latents 64,128 --rounds 2 --repeats 2 "$@"
run hunyuan_transformer benchmarks/hunyuan_transformer.py --latents 128 --rounds 2 --repeats 1 "$@"
run stdit_forward benchmarks/stdit_forward.py
run plan_validation benchmarks/plan_validation.py
run train_memory benchmarks/train_memory.py
# sliding-window denoising: several configurations in one results file
echo "== windowed_denoise"
{
    echo "== sdpa, latent 64, window 32"; python benchmarks/windowed_denoise.py --overlaps 0,8,16
    echo; echo "== sdpa, latent 64, window 32, all windows of a step in one call"
    python benchmarks/windowed_denoise.py --overlaps 0,8 --per-call 9
    echo; echo "== manual attention, latent 64, window 32"; python benchmarks/windowed_denoise.py --overlaps 0,8 --backend manual
    echo; echo "== sdpa, latent 128, window 64"
    python benchmarks/windowed_denoise.py --latent 128 --window 64 --overlaps 0,16 --repeats 2
} 2>&1 | tee benchmarks/results/windowed_denoise.txt
# loading and whole-pipeline memory: random full-size checkpoints in the official layouts, written first
python benchmarks/load_memory.py --make
run load_memory benchmarks/load_memory.py
python benchmarks/load_memory.py --clean
python benchmarks/pipeline_memory.py --make
run pipeline_memory benchmarks/pipeline_memory.py --impls minidit minidit-tiled diffusers
python benchmarks/pipeline_memory.py --clean
if python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    run pixart_gpu_sdpa benchmarks/pixart_gpu.py
    run pixart_gpu_manual benchmarks/pixart_gpu.py --sizes 1024 --backend manual
    run pixart_gpu_bf16 benchmarks/pixart_gpu.py --dtype bfloat16 --sizes 1024
    python benchmarks/pixart_gpu_hires.py --out benchmarks/results/pixart_gpu_hires.txt
else
    echo "== no CUDA card: the GPU benchmarks (pixart_gpu.py, pixart_gpu_hires.py) were not run"
fi
python benchmarks/readme_tables.py
