"""Build a tiny random-init Qwen2 model with a byte-level BPE tokenizer trained on the corpus.

The CPU default of the pipeline uses it instead of Qwen2.5-7B: every stage (agents, eval, RL) runs for real, in
minutes, with nothing downloaded. The output is a normal Hugging Face directory that AutoTokenizer and
AutoModelForCausalLM reload, plus `tiny_model.json` (parameter count, vocabulary size, seed).

The tokenizer mirrors Qwen2's pipeline (NFC normalizer, Qwen's split regex, byte-level BPE), has the chat tokens
<|endoftext|> <|im_start|> <|im_end|> as special tokens, and keeps each agent tag (<search>, </answer>, ...) whole as
a single added token that still decodes as text, so stop strings like "</search>" end on a token boundary.

Example:
  asearcher tiny-model --corpus results/releases/ASearcher-Local-Knowledge/wiki_corpus.jsonl --output results/models/tiny \\
      --config configs/default.yaml
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from asearcher.errors import UserFacingError
from asearcher.utils.jsonl import iter_jsonl, write_json
from asearcher.utils.atomic import atomic_dir

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"
CHAT_SPECIAL = [EOS, "<|im_start|>", "<|im_end|>"]
TAGS = [
    "<think>", "</think>", "<search>", "</search>", "<access>", "</access>", "<answer>", "</answer>",
    "<information>", "</information>", "<thought>", "</thought>",
]  # fmt: skip
# Same split regex as Qwen2's tokenizer, so a reload as Qwen2Tokenizer tokenizes identically.
SPLIT_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
# ChatML, the format Qwen instruct models use; no default system message.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
META_FILE = "tiny_model.json"


def read_passages(corpus: str | Path, lines: int) -> list[str]:
    """The `contents` of the first `lines` corpus rows (a bad row is an error naming file and line)."""
    corpus = Path(corpus)
    if not corpus.exists():
        raise UserFacingError(
            f"corpus file {corpus} does not exist (expected wiki_corpus.jsonl from fetch-data)"
        )
    texts = [str(r["contents"]) for r in iter_jsonl(corpus, require=["contents"], limit=lines)]
    if not texts:
        raise UserFacingError(f"corpus file {corpus} has no passages")
    return texts


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """Train the byte-level BPE and wrap it as a transformers tokenizer with eos/pad and the chat template."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=CHAT_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Tags are ordinary (non-special) added tokens: matched whole, and kept by decode(skip_special_tokens=True).
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=None,
        additional_special_tokens=CHAT_SPECIAL[1:],
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer: Any, cfg: Any) -> Any:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    im_end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=[eos_id, im_end_id],
        pad_token_id=eos_id,
        use_sliding_window=False,
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = [eos_id, im_end_id]
    model.generation_config.pad_token_id = eos_id
    return model.eval()


def build_tiny_model(corpus: str | Path, output: str | Path, cfg: Any = None) -> dict[str, Any]:
    """Build tokenizer + model from `corpus` into `output` (replaced atomically); returns the metadata."""
    from asearcher.config import TinyModelConfig

    cfg = cfg or TinyModelConfig()
    if cfg.hidden_size % cfg.num_attention_heads or cfg.num_attention_heads % cfg.num_key_value_heads:
        raise UserFacingError(
            "tiny_model: hidden_size must be divisible by num_attention_heads, and num_attention_heads by "
            f"num_key_value_heads (got {cfg.hidden_size}, {cfg.num_attention_heads}, {cfg.num_key_value_heads})"
        )
    texts = read_passages(corpus, cfg.tokenizer_corpus_lines)
    log.info("training a %d-token BPE on %d passages of %s", cfg.vocab_size, len(texts), corpus)
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    model = build_model(tokenizer, cfg)
    output = Path(output)
    meta = {
        "params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "bpe_vocab_size": cfg.vocab_size,
        "seed": cfg.seed,
        "corpus": str(corpus),
        "corpus_lines": len(texts),
        "config": cfg.model_dump(),
        "tags": TAGS,
    }
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / META_FILE, meta)
    log.info("tiny model: %d params, vocab %d -> %s", meta["params"], meta["vocab_size"], output)
    return meta


def build_tiny_encoder(
    corpus: str | Path,
    output: str | Path,
    *,
    dim: int = 32,
    layers: int = 2,
    vocab_size: int = 8000,
    passages: int = 3000,
    max_positions: int = 512,
    seed: int = 0,
) -> Path:
    """A random-init BERT encoder with a WordPiece vocabulary trained on the first `passages` of `corpus`, saved
    to `output`: E5's shape (for the dense retrieval path in tests and benchmarks), not its weights."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.train_from_iterator(
        read_passages(corpus, passages),
        trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"], show_progress=False
        ),
    )
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=wp.get_vocab_size(), hidden_size=dim, num_hidden_layers=layers,
        num_attention_heads=max(1, dim // 32), intermediate_size=2 * dim, max_position_embeddings=max_positions,
    )  # fmt: skip
    output = Path(output)
    with atomic_dir(output) as tmp:
        PreTrainedTokenizerFast(
            tokenizer_object=wp, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
        ).save_pretrained(tmp)
        BertModel(cfg).save_pretrained(tmp)
    return output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True, help="wiki_corpus.jsonl (rows with a 'contents' field)")
    p.add_argument("--output", required=True, help="output directory (a Hugging Face model dir)")


def run(args: argparse.Namespace) -> int:
    from asearcher.config import load_config

    cfg = load_config(args.config, args.overrides)
    meta = build_tiny_model(args.corpus, args.output, cfg.tiny_model)
    print(f"wrote {args.output}: {meta['params']:,} params, vocab {meta['vocab_size']}")
    return 0
