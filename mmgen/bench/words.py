"""The benchmarks' word-level tokenizer: every whitespace-separated word is exactly one token,
so sample lengths are what the benchmark says they are."""

from __future__ import annotations

# ids 0-3 are pad, bos, eos, unk; the plain chat format's role markers are one word each
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "User:", "Assistant:"]


def word_tokenizer(words: int, placeholder: str):
    """``SPECIALS``, the modality ``placeholder`` and ``w0`` ... ``w{words - 1}``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = [*SPECIALS, placeholder, *(f"w{i}" for i in range(words))]
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, "<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=[placeholder],
    )


def vocab_size(words: int) -> int:
    """The tokenizer's size for ``words`` words (with the specials and the placeholder)."""
    return len(SPECIALS) + 1 + words
