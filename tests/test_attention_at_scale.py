"""The direct path never materialises an N x N matrix: full-width blocks of PixArt-Σ, SD3.5 (MM-DiT-X) and
Hunyuan-DiT at 65 536 image tokens (a 4096² image) run on the `meta` device (shapes only, no memory), while a
TorchFunctionMode records every torch function the model code calls (Tensor.__matmul__, softmax, bmm, ...,
and F.scaled_dot_product_attention as ONE call: on meta, SDPA itself decomposes into the math path below the
Python level, which is why the record is taken above it). Every attention must go through SDPA, and no
tensor the model code makes may have two trailing dims >= N. A negative control runs the manual backend and
must see the scores. On the CPU at 4 096 tokens the dispatcher is recorded too: SDPA's fused CPU kernel runs,
and no (..., N, N) tensor appears."""
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from minidit.attention import attention_backend
from minidit.embed import get_2d_rope
from minidit.hunyuan import HUNYUAN_V12, HunyuanBlock
from minidit.mmdit import SD35_MEDIUM, JointBlock
from minidit.pixart import PixArtBlock

torch.set_num_threads(1)
SIDE = 256                                   # 4096 px / 8 (VAE) / 2 (patch): a 256 x 256 token grid
N = SIDE * SIDE                              # 65 536 image tokens
B = 2                                        # the CFG batch


class ModelCode(TorchFunctionMode):
    """Records (function name, output shapes) of every torch function called, and SDPA's q, k shapes."""

    def __init__(self):
        super().__init__()
        self.shapes, self.sdpa = [], []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.sdpa.append((tuple(args[0].shape), tuple(args[1].shape)))
        out = func(*args, **kwargs)
        self.shapes += [(getattr(func, "__name__", str(func)), tuple(t.shape))
                        for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out

    def square(self, n: int):
        """Outputs whose two trailing dims are both >= n: an n x n score matrix."""
        return [(f, s) for f, s in self.shapes if len(s) >= 2 and s[-1] >= n and s[-2] >= n]


def pixart_block(sr_ratio=1):
    with torch.device("meta"):
        block = PixArtBlock(1152, 16, sampling="conv" if sr_ratio > 1 else None, sr_ratio=sr_ratio)
        args = (torch.empty(B, N, 1152), torch.empty(B, 300, 1152), torch.empty(B, 6 * 1152),
                torch.ones(B, 300, dtype=torch.bool), (SIDE, SIDE))
    return block, args


def sd3_block():
    D = SD35_MEDIUM.hidden_size                                          # 1536, 24 heads
    with torch.device("meta"):
        block = JointBlock(D, SD35_MEDIUM.num_heads, qk_norm="rms", x_block_self_attn=True)   # MMDiT-X layer
        args = (torch.empty(B, 333, D), torch.empty(B, N, D), torch.empty(B, D))
    return block, args


def hunyuan_block():
    c = HUNYUAN_V12                                                      # 1408, 16 heads of 88
    with torch.device("meta"):
        block = HunyuanBlock(c, skip=True)
        rope = tuple(r.to("meta") for r in get_2d_rope(c.head_dim, SIDE, SIDE))
        args = (torch.empty(B, N, c.hidden_size), torch.empty(B, c.hidden_size), torch.empty(B, 333, c.text_states_dim),
                rope, torch.empty(B, N, c.hidden_size))
    return block, args


# name -> (block, (q tokens, k tokens) of each attention call)
BLOCKS = {"pixart-sigma": (pixart_block, [(N, N), (N, 300)]),
          "sd3.5-medium": (sd3_block, [(333 + N, 333 + N), (N, N)]),
          "hunyuan-dit": (hunyuan_block, [(N, N), (N, 333)])}


@pytest.mark.parametrize("name", BLOCKS)
def test_full_width_block_at_65536_tokens_uses_sdpa_and_no_scores(name):
    make, expected = BLOCKS[name]
    block, args = make()
    with torch.no_grad(), ModelCode() as record:
        block(*args)
    assert [(q[-2], k[-2]) for q, k in record.sdpa] == expected
    assert record.square(N) == []
    # negative control: the manual path writes the scores out, and the recorder sees them
    with torch.no_grad(), attention_backend("manual"), ModelCode() as manual:
        block(*args)
    assert manual.sdpa == [] and manual.square(N)


@pytest.mark.parametrize("r", [2, 4])
def test_kv_compression_at_4096px_has_n_over_r2_keys(r):
    block, args = pixart_block(sr_ratio=r)
    with torch.no_grad(), ModelCode() as record:
        block(*args)
    (q, k), cross = record.sdpa
    assert q[-2] == N and k[-2] == N // r**2 == (SIDE // r) ** 2 and cross[1][-2] == 300
    assert record.square(N) == []


class Dispatched(TorchDispatchMode):
    """Every aten op that actually runs (below SDPA's own dispatch), with its output shapes."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.append((str(func), [tuple(t.shape) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]))
        return out


def test_on_the_cpu_sdpa_runs_a_fused_kernel_without_scores():
    """A narrow PixArt block at 4 096 tokens, on the CPU: the kernel that runs is a fused SDPA one."""
    n = 64 * 64
    torch.manual_seed(0)
    block = PixArtBlock(32, 2).eval()
    with torch.no_grad(), Dispatched() as record:
        block(torch.randn(1, n, 32), torch.randn(1, 7, 32), torch.randn(1, 6 * 32), torch.ones(1, 7, dtype=torch.bool),
              (64, 64))
    fused = [op for op, _ in record.ops if "scaled_dot_product" in op]
    assert len(fused) == 2, [op for op, _ in record.ops]
    assert not [(op, s) for op, shapes in record.ops for s in shapes if len(s) >= 2 and min(s[-2:]) >= n]
