"""Tiny but real sample repos for the mirror's tests, benchmark and lab demo.

The model is a BERT config with a WordLevel tokenizer trained on a few words and weights
in safetensors, so transformers' AutoConfig/AutoTokenizer load it for real. Needs the
test extras (tokenizers, numpy, safetensors).
"""

from __future__ import annotations

import json
from pathlib import Path

WORDS = [
    "the",
    "mirror",
    "serves",
    "models",
    "to",
    "gpu",
    "hosts",
    "offline",
    "without",
    "any",
    "internet",
    "access",
]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tokenizer(dest: Path) -> int:
    """Train a WordLevel tokenizer on WORDS; write tokenizer.json + config; return vocab size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        [" ".join(WORDS)] * 3, trainers.WordLevelTrainer(special_tokens=SPECIAL)
    )
    tok.save(str(dest / "tokenizer.json"))
    (dest / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "model_max_length": 32,
                "unk_token": "[UNK]",
                "pad_token": "[PAD]",
                "cls_token": "[CLS]",
                "sep_token": "[SEP]",
                "mask_token": "[MASK]",
            },
            indent=2,
        )
    )
    (dest / "special_tokens_map.json").write_text(
        json.dumps({"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]"}, indent=2)
    )
    return tok.get_vocab_size()


def build_tiny_bert(dest: Path, extra_weights_mb: int = 0) -> Path:
    """A loadable tiny BERT repo in `dest`; `extra_weights_mb` adds a random-filled shard."""
    import numpy as np
    from safetensors.numpy import save_file

    dest.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(dest)
    hidden = 8
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 16,
        "max_position_embeddings": 32,
        "type_vocab_size": 2,
    }
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    rng = np.random.default_rng(0)
    save_file(
        {
            "embeddings.word_embeddings.weight": rng.standard_normal(
                (vocab, hidden), dtype=np.float32
            ),
            "embeddings.position_embeddings.weight": rng.standard_normal(
                (32, hidden), dtype=np.float32
            ),
        },
        str(dest / "model.safetensors"),
        metadata={"format": "np"},
    )
    (dest / "README.md").write_text("# tiny-bert\n\nA tiny sample model for the gpuprov mirror.\n")
    if extra_weights_mb:
        n = extra_weights_mb * 1024 * 1024 // 4
        save_file(
            {"extra": rng.integers(0, 2**31, size=n, dtype=np.int32)},
            str(dest / "extra.safetensors"),
        )
    return dest


def build_tiny_dataset(dest: Path, files: int = 3) -> Path:
    """A dataset repo: a card, a CSV and `files` small JSONL shards under data/."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny dataset\n")
    (dest / "train.csv").write_text(
        "text,label\n" + "".join(f"{w},{i % 2}\n" for i, w in enumerate(WORDS))
    )
    (dest / "data").mkdir(exist_ok=True)
    for i in range(files):
        (dest / "data" / f"shard-{i:03d}.jsonl").write_text(
            json.dumps({"i": i, "w": WORDS[i % len(WORDS)]}) + "\n"
        )
    return dest
