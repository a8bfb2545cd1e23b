"""Text encoders and tokenizers, written by hand: T5 v1.1 / mT5 (`t5`), CLIP (`clip`), BERT (`bert`),
and `tokenizers` (sentencepiece wrapper, CLIP byte-level BPE, WordPiece). Every encoder is called
`encoder(input_ids, attention_mask=None, output_hidden_states=False)` and returns a
`common.TextEncoderOutput`; load real weights with `weights_loader.load_{t5,clip,bert}`.
"""
from .bert import BertConfig, BertModel
from .clip import CLIPTextConfig, CLIPTextModel
from .common import TextEncoderOutput
from .t5 import T5Config, T5EncoderModel
from .tokenizers import CLIPTokenizer, T5Tokenizer, WordPieceTokenizer

__all__ = ["BertConfig", "BertModel", "CLIPTextConfig", "CLIPTextModel", "TextEncoderOutput", "T5Config",
           "T5EncoderModel", "CLIPTokenizer", "T5Tokenizer", "WordPieceTokenizer"]
