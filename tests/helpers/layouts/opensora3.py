"""Open-Sora 1.2: the key layouts of `hpcai-tech/OpenSora-STDiT-v3` and the temporal part of
`hpcai-tech/OpenSora-VAE-v1.2`, written out by hand from the official module structure
(hpcaitech/Open-Sora v1.2.0 `opensora/models/stdit/stdit3.py`, `opensora/models/layers/blocks.py`,
`opensora/models/vae/vae_temporal.py`), independently of minidit's modules and of weights_loader.

STDiT3 (`STDiT3.__init__`):
    pos_embed = PositionEmbedding2D        inv_freq is a non-persistent buffer: no key
    rope = RotaryEmbedding(hd)             `rope.freqs` (hd/2,): a frozen nn.Parameter, so it IS saved
    x_embedder = PatchEmbed3D              proj = Conv3d(C, D, patch, stride=patch)
    t_embedder = TimestepEmbedder          mlp.0 Linear(256, D), mlp.2 Linear(D, D)
    fps_embedder = SizeEmbedder(D)         mlp.0, mlp.2 (same shapes)
    t_block = [SiLU, Linear(D, 6D)]        t_block.1
    y_embedder = CaptionEmbedder           y_proj = timm Mlp (fc1 C_cap->D, fc2 D->D), y_embedding buffer (L, C_cap)
    spatial_blocks[i], temporal_blocks[i]  STDiT3Block: attn (qkv, q_norm, k_norm = LlamaRMSNorm(hd) weights,
                                           proj), cross_attn (q_linear, kv_linear, proj), mlp (fc1, fc2),
                                           scale_shift_table (6, D); norm1/norm2 have no affine -> no keys
                                           (the temporal blocks' RoPE is a bound method: no key)
    final_layer = T2IFinalLayer            linear (prod(patch) * C_out, D), scale_shift_table (2, D)
"""


def stdit3_keys(cfg: dict) -> dict:
    """{key: shape} of an STDiT3 state dict for the official config fields in `cfg`."""
    D, C, nh = cfg["hidden_size"], cfg["in_channels"], cfg["num_heads"]
    pt, ph, pw = cfg["patch_size"]
    C_out = 2 * C if cfg.get("pred_sigma", True) else C
    hd, hidden, C_cap = D // nh, int(D * cfg.get("mlp_ratio", 4.0)), cfg["caption_channels"]
    keys = {"rope.freqs": (hd // 2,),
            "x_embedder.proj.weight": (D, C, pt, ph, pw), "x_embedder.proj.bias": (D,),
            "y_embedder.y_embedding": (cfg["model_max_length"], C_cap),
            "final_layer.scale_shift_table": (2, D),
            "final_layer.linear.weight": (pt * ph * pw * C_out, D), "final_layer.linear.bias": (pt * ph * pw * C_out,)}

    def linear(name, out_f, in_f):
        keys[f"{name}.weight"], keys[f"{name}.bias"] = (out_f, in_f), (out_f,)

    for emb in ("t_embedder", "fps_embedder"):
        linear(f"{emb}.mlp.0", D, 256), linear(f"{emb}.mlp.2", D, D)
    linear("t_block.1", 6 * D, D)
    linear("y_embedder.y_proj.fc1", D, C_cap), linear("y_embedder.y_proj.fc2", D, D)
    for kind in ("spatial_blocks", "temporal_blocks"):
        for i in range(cfg["depth"]):
            b = f"{kind}.{i}."
            keys[b + "scale_shift_table"] = (6, D)
            linear(b + "attn.qkv", 3 * D, D), linear(b + "attn.proj", D, D)
            if cfg.get("qk_norm", True):
                keys[b + "attn.q_norm.weight"], keys[b + "attn.k_norm.weight"] = (hd,), (hd,)
            linear(b + "cross_attn.q_linear", D, D), linear(b + "cross_attn.kv_linear", 2 * D, D)
            linear(b + "cross_attn.proj", D, D)
            linear(b + "mlp.fc1", hidden, D), linear(b + "mlp.fc2", D, hidden)
    return keys


def vae_temporal_keys(in_out_channels=4, latent_embed_dim=4, embed_dim=4, filters=128, num_res_blocks=4,
                      channel_multipliers=(1, 2, 2, 4), temporal_downsample=(False, True, True)) -> dict:
    """{key: shape} of `VAE_Temporal(...)` (no prefix), as its Encoder / Decoder constructors build it."""
    s = {}

    def conv(name, cout, cin, k, bias=True):            # CausalConv3d wraps an nn.Conv3d called `conv`
        s[f"{name}.conv.weight"] = (cout, cin, k, k, k)
        if bias:
            s[f"{name}.conv.bias"] = (cout,)

    def norm(name, c):
        s[f"{name}.weight"], s[f"{name}.bias"] = (c,), (c,)

    def res(name, cin, cout):                           # ResBlock: bias-free convs, conv3 shortcut
        norm(f"{name}.norm1", cin), conv(f"{name}.conv1", cout, cin, 3, False)
        norm(f"{name}.norm2", cout), conv(f"{name}.conv2", cout, cout, 3, False)
        if cin != cout:
            conv(f"{name}.conv3", cout, cin, 1, False)

    widths = [filters * m for m in channel_multipliers]
    conv("encoder.conv_in", filters, in_out_channels, 3, bias=False)
    prev = filters
    for i, w in enumerate(widths):
        for j in range(num_res_blocks):
            res(f"encoder.block_res_blocks.{i}.{j}", prev, w)
            prev = w
        if i < len(widths) - 1 and temporal_downsample[i]:      # else nn.Identity: no keys, index kept
            conv(f"encoder.conv_blocks.{i}", w, w, 3)
    for j in range(num_res_blocks):
        res(f"encoder.res_blocks.{j}", prev, prev)
    norm("encoder.norm1", prev), conv("encoder.conv2", 2 * latent_embed_dim, prev, 1)
    conv("quant_conv", 2 * embed_dim, 2 * latent_embed_dim, 1)
    conv("post_quant_conv", latent_embed_dim, embed_dim, 1)
    prev = widths[-1]
    conv("decoder.conv1", prev, latent_embed_dim, 3)
    for j in range(num_res_blocks):
        res(f"decoder.res_blocks.{j}", prev, prev)
    for i in reversed(range(len(widths))):
        for j in range(num_res_blocks):
            res(f"decoder.block_res_blocks.{i}.{j}", prev, widths[i])
            prev = widths[i]
        if i > 0 and temporal_downsample[i - 1]:
            conv(f"decoder.conv_blocks.{i - 1}", 2 * prev, prev, 3)
    norm("decoder.norm1", prev), conv("decoder.conv_out", in_out_channels, prev, 3)
    return s
