"""Wrong MM-DiT joint attention layers (exercise 14)."""
import torch

from helpers.mutants import Mutant
from minidit.attention import attention, merge_heads
from minidit.mmdit import JointBlock


def _unscaled(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v


def _joint_block(order="text_first", joint=True, use_qkv2=True, attend=attention):
    class WrongJointBlock(JointBlock):
        def forward(self, context, x, c):
            (cq, ck, cv), _, cmods = self.context_block.pre_attention(context, c)
            (xq, xk, xv), qkv2, xmods = self.x_block.pre_attention(x, c)
            L = context.shape[1]
            if not joint:
                text, image = merge_heads(attend(cq, ck, cv)), merge_heads(attend(xq, xk, xv))
            else:
                if order == "text_first":
                    q, k, v = torch.cat([cq, xq], 2), torch.cat([ck, xk], 2), torch.cat([cv, xv], 2)
                else:                    # [x, context], cut as if the text came first
                    q, k, v = torch.cat([xq, cq], 2), torch.cat([xk, ck], 2), torch.cat([xv, cv], 2)
                out = merge_heads(attend(q, k, v))
                text, image = out[:, :L], out[:, L:]
            attn2 = merge_heads(attend(*qkv2)) if qkv2 is not None and use_qkv2 else None
            x = self.x_block.post_attention(x, image, attn2, xmods)
            context = None if self.context_block.pre_only else self.context_block.post_attention(
                context, text, None, cmods)
            return context, x
    return WrongJointBlock


MUTANTS = [
    Mutant("[x, context] order, text cut first", {"JointBlock": _joint_block(order="image_first")},
           "you concatenated [image, text]"),
    Mutant("separate attention per stream", {"JointBlock": _joint_block(joint=False)},
           "each stream attends only to itself"),
    Mutant("MMDiT-X image-only attention dropped", {"JointBlock": _joint_block(use_qkv2=False)},
           "extra self-attention (qkv2, MMDiT-X) is missing"),
    Mutant("no softmax scale", {"JointBlock": _joint_block(attend=_unscaled)}, "no 1/sqrt(head_dim) scale"),
]
