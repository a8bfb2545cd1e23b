"""T5 encoder forward pass: minidit vs transformers' T5EncoderModel on identical weights (CPU).

    python benchmarks/t5_encoder.py                  # t5-v1_1-base size, 300 tokens, batch 1, fp32
    python benchmarks/t5_encoder.py --tiny           # a 2-layer model, for a quick smoke test

t5-v1_1-base shape: d_model 768, 12 layers, 12 heads, d_ff 2048, gated-GELU — the same network as
PixArt's T5-XXL at 1/60 of the size. Random weights are written once with `save_pretrained`;
transformers reads them with `from_pretrained`, minidit through `weights_loader.load_t5`. The
prompt has PixArt-Σ's shape: 300 tokens, of which the first 40 are real and the rest padding,
with the attention mask. Each implementation runs in a fresh process (`--rounds` of them,
alternating the order; the fastest is kept): median wall time of the forward pass and the peak
resident-memory increase during it (weights — paged in first — and inputs excluded), see
`benchmarks/common.py`; the outputs must agree (the script checks it).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import (COMPARISON_COLUMNS, child_case, comparison_rows, machine, markdown_table, max_abs_diff,  # noqa: E402
                               measure, report, run_rounds, touch)

BASE = dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12)
TINY = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)


def child(case):
    import torch
    torch.manual_seed(0)
    ids = torch.randint(3, 32000, (case["batch"], case["tokens"]))
    mask = torch.zeros_like(ids)
    mask[:, :case["real_tokens"]] = 1
    ids[mask == 0] = 0                                                  # <pad>
    if case["impl"] == "transformers":
        from transformers import T5EncoderModel
        model = T5EncoderModel.from_pretrained(case["folder"]).eval()
        run = lambda: model(input_ids=ids, attention_mask=mask).last_hidden_state      # noqa: E731
        extra = {"attention": model.config._attn_implementation}
    else:
        from weights_loader import load_t5
        model = load_t5(case["folder"])
        run = lambda: model(ids, mask).last_hidden_state                                # noqa: E731
        extra = {"attention": "minidit.attention (sdpa)"}
    touch(model)                     # page in memory-mapped weights: they are not activation memory
    out, result = measure(run, case["repeats"])
    torch.save(out, case["out"])
    report({**result, **extra})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="2-layer width-64 model (smoke test)")
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--real-tokens", type=int, default=40, help="tokens before the padding")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards per process (median)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per implementation, alternating order")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the children")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="t5_bench_") as work:
        run_benchmark(args, work)


def run_benchmark(args, work):
    import torch
    from transformers import T5Config, T5EncoderModel
    if args.threads:
        torch.set_num_threads(args.threads)          # so that machine() reports the children's setting
    torch.manual_seed(0)
    shape = TINY if args.tiny else BASE
    model = T5EncoderModel(T5Config(vocab_size=32128, feed_forward_proj="gated-gelu", **shape))
    model.save_pretrained(work)
    del model

    outs = {impl: os.path.join(work, f"{impl}.pt") for impl in ("transformers", "minidit")}
    res = run_rounds(__file__, {impl: dict(impl=impl, folder=work, tokens=args.tokens, real_tokens=args.real_tokens,
                                           batch=args.batch, repeats=args.repeats, out=out)
                                for impl, out in outs.items()}, args.rounds, args.threads)
    err = max_abs_diff(outs["minidit"], outs["transformers"])
    rows = comparison_rows(res, "transformers")
    for row in rows:
        row["attention"] = res[row["impl"]]["attention"]
    rows[-1]["max abs diff"] = f"{err:.1e}"
    name = "tiny T5" if args.tiny else "t5-v1_1-base"
    print(f"\n{name} encoder, {args.tokens} tokens ({args.real_tokens} real + padding, with mask), batch "
          f"{args.batch}, fp32, {machine()}\n")
    print(markdown_table(rows, ["impl", "attention", *COMPARISON_COLUMNS, "max abs diff"]))
    if err > 1e-3:
        raise SystemExit(f"minidit and transformers disagree (max abs diff {err:.2e}): the timing is meaningless")


if __name__ == "__main__":
    case = child_case()
    child(case) if case else main()
