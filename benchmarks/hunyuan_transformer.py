"""Hunyuan-DiT-g/2 (v1.2) transformer forward: minidit vs diffusers' HunyuanDiT2DModel on identical weights.

    python benchmarks/hunyuan_transformer.py                  # 1024² (latent 128²), CPU fp32
    python benchmarks/hunyuan_transformer.py --tiny           # a 4-block width-128 model, a quick smoke test
    python benchmarks/hunyuan_transformer.py --depth 4        # full width (1408, 16 heads x 88), fewer blocks

One forward as a CFG sampling step runs it: batch 2 (conditional + unconditional), 77 BERT-CLIP
tokens (1024-d) + 256 mT5 tokens (2048-d), random states with all-ones masks (so the learned padding
embedding is not used), timestep 500. Both get the same 2-D RoPE tables (`minidit.embed.get_2d_rope`
on the base-512 grid, which is what diffusers' pipeline computes for square images). Random weights
are written once in the diffusers layout (`save_pretrained`): every parameter N(0, 0.02²), except the
LayerNorm weights, 1 + N(0, 0.02²) — at 0.02 the QK-norms would shrink every attention score to ~0
(uniform attention, RoPE without effect) and the comparison would check less. minidit reads the same
file through `weights_loader.load_hunyuan`, and the script checks that the outputs agree. Each
(implementation, size) runs in a fresh process (`--rounds` of them, alternating which implementation
goes first; the fastest is kept): median wall time of the forward and the peak resident-memory
increase over the warm-up and timed forwards (weights and inputs excluded), see `benchmarks/common.py`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import (COMPARISON_COLUMNS, child_case, comparison_rows, machine, markdown_table, max_abs_diff,  # noqa: E402
                               measure, report, run_rounds, touch)

# diffusers' HunyuanDiT2DModel config of Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers (transformer/config.json).
HUNYUAN_V12 = dict(num_attention_heads=16, attention_head_dim=88, in_channels=4, patch_size=2, hidden_size=1408,
                   num_layers=40, mlp_ratio=4.3637, sample_size=128, learn_sigma=True, cross_attention_dim=1024,
                   cross_attention_dim_t5=2048, pooled_projection_dim=1024, text_len=77, text_len_t5=256,
                   use_style_cond_and_image_meta_size=False)
TINY = dict(HUNYUAN_V12, num_layers=4, num_attention_heads=2, attention_head_dim=64, hidden_size=128)
CLIP_TOKENS, T5_TOKENS = 77, 256


def child(case):
    import torch
    from minidit.embed import get_2d_rope
    g = torch.Generator().manual_seed(0)
    B, side = 2, case["latent"]
    x = torch.randn(B, 4, side, side, generator=g)
    kw = dict(encoder_hidden_states=torch.randn(B, CLIP_TOKENS, 1024, generator=g),
              text_embedding_mask=torch.ones(B, CLIP_TOKENS, dtype=torch.long),
              encoder_hidden_states_t5=torch.randn(B, T5_TOKENS, 2048, generator=g),
              text_embedding_mask_t5=torch.ones(B, T5_TOKENS, dtype=torch.long))
    t = torch.tensor([500.0, 500.0])
    cos, sin = get_2d_rope(case["head_dim"], side // 2, side // 2)                 # (T, hd) each, for both
    if case["impl"] == "diffusers":
        from diffusers import HunyuanDiT2DModel
        model = HunyuanDiT2DModel.from_pretrained(case["folder"]).eval()
        run = lambda: model(x, t, **kw, image_rotary_emb=(cos, sin), return_dict=False)[0]  # noqa: E731
    else:
        from weights_loader import load_hunyuan
        model = load_hunyuan(case["folder"])
        run = lambda: model(x, t, **kw, cos_cis_img=cos, sin_cis_img=sin)          # noqa: E731
    touch(model)                     # page in memory-mapped weights: they are not activation memory
    with torch.no_grad():
        out, result = measure(run, case["repeats"])
    torch.save(out, case["out"])
    report(result)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="4-block width-128 model (smoke test)")
    parser.add_argument("--depth", type=int, help="override the number of blocks (40), keeping the width; even, >= 4")
    parser.add_argument("--latents", type=str, default="128", help="latent sides (64 = 512², 128 = 1024²)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per process (median)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per implementation, alternating order")
    args = parser.parse_args()
    if args.depth is not None and (args.depth % 2 or args.depth < 4):
        parser.error(f"--depth {args.depth}: the long skips need an even depth of at least 4")

    import torch
    from diffusers import HunyuanDiT2DModel
    shape = dict(TINY if args.tiny else HUNYUAN_V12)
    if args.depth:
        shape["num_layers"] = args.depth
    folder = os.path.join(tempfile.mkdtemp(prefix="hunyuan_bench_"), "transformer")
    torch.manual_seed(0)
    model = HunyuanDiT2DModel(**shape)
    with torch.no_grad():                      # non-zero everywhere; LayerNorm weights near 1 (module docstring)
        for p in model.parameters():
            p.normal_(0, 0.02)
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm) and m.weight is not None:
                m.weight.normal_(1, 0.02)
    model.save_pretrained(folder)             # RoPE is passed in: one folder serves every latent size
    del model

    rows = []
    for side in (int(s) for s in args.latents.split(",")):
        outs = {impl: os.path.join(os.path.dirname(folder), f"{impl}{side}.pt") for impl in ("diffusers", "minidit")}
        res = run_rounds(__file__, {impl: dict(impl=impl, folder=folder, latent=side, head_dim=shape["attention_head_dim"],
                                               repeats=args.repeats, out=out)
                                    for impl, out in outs.items()}, args.rounds)
        err = max_abs_diff(outs["minidit"], outs["diffusers"])
        rows += comparison_rows(res, "diffusers", image=f"{side * 8}²")
        rows[-1]["max abs diff"] = f"{err:.1e}"
    width = shape["num_attention_heads"] * shape["attention_head_dim"]
    name = f"Hunyuan-DiT-g/2 v1.2{' (tiny)' if args.tiny else ''}, {shape['num_layers']} blocks, width {width}"
    print(f"\n{name}, batch 2 (CFG), {CLIP_TOKENS} + {T5_TOKENS} text tokens, fp32, {machine()}\n")
    print(markdown_table(rows, ["image", "impl", *COMPARISON_COLUMNS, "max abs diff"]))


if __name__ == "__main__":
    case = child_case()
    child(case) if case else main()
