"""scripts/train.py under torchrun: 2 CPU processes (gloo) train what 1 process with the doubled batch trains,
and a checkpoint the 2 processes saved resumes in 1.

The launcher is PyTorch's own (`python -m torch.distributed.run`, what the `torchrun` command runs), on a free
port, with a tiny DiT on the digits for 4 steps. The two runs agree to float noise (the all-reduce of the
gradients sums in another order than one process's batch), not bit for bit."""
import importlib.util
import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from minidit.pipelines.toy import TOY
from tests.helpers.parity import EXACT, FP32, assert_parity
from weights_loader import load_dit

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data", "digits", "--hidden-size", "32", "--depth", "1", "--heads", "2", "--steps", "4", "--lr", "1e-3",
        "--log-every", "1", "--threads", "1"]


def _script():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(out: Path, *args) -> list:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(ROOT / "scripts" / "train.py"), *TINY, "--out", str(out), *args]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log = json.loads((out / "log.json").read_text())
    assert log["config"]["world_size"] == 2 and log["config"]["global_batch"] == 8
    return log["losses"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    result = _script().main([*TINY, "--batch-size", "8", "--out", str(out)])
    return result["losses"], torch.load(result["checkpoint"], weights_only=True)


@pytest.mark.parametrize("mode, split", [("ddp", ["--batch-size", "2", "--grad-accum", "2"]),
                                         ("fsdp", ["--batch-size", "4"])])
def test_two_processes_train_what_one_process_with_the_doubled_batch_trains(tmp_path, one_process, mode, split):
    losses_one, ckpt_one = one_process
    two = tmp_path / "two"
    losses_two = _torchrun(two, *split, "--distributed", mode, "--save-every", "2")
    assert_parity(torch.tensor(losses_two), torch.tensor(losses_one), tol=FP32, what=f"{mode} loss curve")
    ckpt_two = torch.load(two / "checkpoint-0000004.pt", weights_only=True)
    assert set(ckpt_two["model"]) == set(ckpt_one["model"])                 # full tensors, no "module." prefix
    for k, v in ckpt_one["model"].items():
        assert_parity(ckpt_two["model"][k], v, tol=FP32, what=k)

    # the 2 processes' checkpoint at step 2, resumed by 1 process with the same global batch (8)
    resumed = _script().main([*TINY, "--batch-size", "8", "--out", str(tmp_path / "resumed"),
                              "--resume", str(two / "checkpoint-0000002.pt")])
    assert_parity(torch.tensor(resumed["losses"]), torch.tensor(losses_one[2:]), tol=FP32, what="resumed losses")
    ckpt_resumed = torch.load(resumed["checkpoint"], weights_only=True)
    for k, v in ckpt_one["ema"]["shadow"].items():
        assert_parity(ckpt_resumed["ema"]["shadow"][k], v, tol=FP32, what=f"EMA {k}")


def test_script_refuses_bad_arguments(tmp_path):
    script = _script()
    with pytest.raises(script.InputError, match="PREFIX=LR"):
        script.main([*TINY, "--lr-group", "y_embedder.", "--out", str(tmp_path / "a")])
    with pytest.raises(script.InputError, match="--weights"):
        script.main(["--data", str(tmp_path), "--out", str(tmp_path / "b")])
    with pytest.raises(script.InputError, match="no bucket holds"):
        script.main([*TINY, "--batch-size", "4000", "--out", str(tmp_path / "c")])


def test_script_exports_both_layouts(tmp_path):
    result = _script().main([*TINY, "--steps", "1", "--batch-size", "4", "--export-diffusers", "--out", str(tmp_path)])
    original = load_dit(result["export"], replace(TOY, hidden_size=32, depth=1, num_heads=2))   # ema.pt
    folder = load_dit(tmp_path / "ema_diffusers")                                               # config.json read
    for k, v in original.state_dict().items():
        assert_parity(folder.state_dict()[k], v, tol=EXACT, what=k)


def test_script_trains_lora_adapters_only(tmp_path):
    """--lora-rank on the shipped toy DiT: only the adapters move, and the file holds the adapters only
    (minidit.lora's format), which load strictly onto a fresh copy of the toy."""
    from minidit.lora import load_lora, lora_layers
    from minidit.pipelines.toy import WEIGHTS, load_toy_model
    result = _script().main(["--data", "digits", "--init", str(WEIGHTS), "--steps", "2", "--batch-size", "8",
                             "--lr", "1e-3", "--lora-rank", "4", "--threads", "1", "--out", str(tmp_path)])
    assert result["export"].name == "lora.safetensors"
    trained = torch.load(result["checkpoint"], weights_only=True)["model"]
    toy = load_toy_model().state_dict()
    frozen = {k.replace(".base.", "."): v for k, v in trained.items() if "lora_" not in k}
    assert frozen.keys() == toy.keys()
    for k, v in toy.items():
        assert_parity(frozen[k], v, tol=EXACT, what=k)                       # the base did not move
    assert all(trained[k].abs().max() > 0 for k in trained if k.endswith("lora_B"))    # B left zero
    fresh = load_toy_model()
    names = load_lora(fresh, result["export"])
    assert set(names) == set(lora_layers(fresh)) and {n.rsplit(".", 1)[-1] for n in names} == {"qkv", "proj"}
