"""The VAE: the original (ldm / CompVis) AutoencoderKL layout (docs/checkpoints.md#vae-ldm-and-diffusers-key-names), written out
by hand from the architecture, and random weights in it."""
import torch


def ldm_shapes(ch, ch_mult, num_res_blocks, z, quant=True, in_ch=3, out_ch=3):
    """The ldm VAE keys and shapes, written from the architecture (docs/checkpoints.md#vae-architecture)."""
    s = {}

    def conv(name, cout, cin, k):
        s[f"{name}.weight"], s[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    def norm(name, c):
        s[f"{name}.weight"], s[f"{name}.bias"] = (c,), (c,)

    def resnet(name, cin, cout):
        norm(f"{name}.norm1", cin), conv(f"{name}.conv1", cout, cin, 3)
        norm(f"{name}.norm2", cout), conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cout, cin, 1)

    def mid(prefix, c):
        resnet(f"{prefix}.mid.block_1", c, c), resnet(f"{prefix}.mid.block_2", c, c)
        norm(f"{prefix}.mid.attn_1.norm", c)
        for n in ("q", "k", "v", "proj_out"):
            conv(f"{prefix}.mid.attn_1.{n}", c, c, 1)

    widths = [ch * m for m in ch_mult]
    conv("encoder.conv_in", ch, in_ch, 3)
    cin = ch
    for i, w in enumerate(widths):
        for j in range(num_res_blocks):
            resnet(f"encoder.down.{i}.block.{j}", cin if j == 0 else w, w)
        if i < len(widths) - 1:
            conv(f"encoder.down.{i}.downsample.conv", w, w, 3)
        cin = w
    mid("encoder", cin), norm("encoder.norm_out", cin), conv("encoder.conv_out", 2 * z, cin, 3)
    conv("decoder.conv_in", widths[-1], z, 3), mid("decoder", widths[-1])
    cin = widths[-1]
    for i in reversed(range(len(widths))):
        for j in range(num_res_blocks + 1):
            resnet(f"decoder.up.{i}.block.{j}", cin if j == 0 else widths[i], widths[i])
        if i > 0:
            conv(f"decoder.up.{i}.upsample.conv", widths[i], widths[i], 3)
        cin = widths[i]
    norm("decoder.norm_out", cin), conv("decoder.conv_out", out_ch, cin, 3)
    if quant:
        conv("quant_conv", 2 * z, 2 * z, 1), conv("post_quant_conv", z, z, 1)
    return s


def random_ldm(shapes, prefix="", seed=0):
    """Random weights for {key: shape} (e.g. `ldm_shapes`): convolutions at 1/sqrt(fan-in), norm scales
    around 1 and every other vector around 0 (std 0.3), keys under `prefix`."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in shapes.items():
        fan_in = shape[1] * shape[2] * shape[3] if len(shape) == 4 else 1
        scale = fan_in ** -0.5 if len(shape) == 4 else 0.3
        base = 1.0 if k.endswith("weight") and len(shape) == 1 else 0.0
        sd[prefix + k] = base + scale * torch.randn(shape, generator=g)
    return sd
