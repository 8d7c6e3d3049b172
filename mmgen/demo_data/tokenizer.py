"""A word-level tokenizer built from a demo dataset's own words (nothing can be downloaded).

Every word of the prompts and answers gets one id, so the answer "C4 G5 E4" is three tokens and
exact match is a plain comparison. The chat template marks turns with special tokens, which the
tokenizer never splits and which end in ``<|end|>`` (the eos: generation stops there)::

    <s><|user|> What notes are played in <audio>? <|end|> <|assistant|> C4 G5 E4 <|end|>
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

BOS, EOS, PAD, UNK = "<s>", "<|end|>", "<pad>", "<unk>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS, USER, ASSISTANT]
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|> {{ message['content'] }} <|end|> "
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def words(texts: Iterable[str], placeholders: Iterable[str] = ()) -> list[str]:
    """The distinct words of ``texts`` as the tokenizer splits them, in first-seen order.
    Placeholders are dropped: the processor cuts them out before tokenizing."""
    from tokenizers.pre_tokenizers import Whitespace

    split = Whitespace()
    placeholders = tuple(placeholders)
    seen: dict[str, None] = {}
    for text in texts:
        for placeholder in placeholders:
            text = text.replace(placeholder, " ")
        for word, _ in split.pre_tokenize_str(text):
            seen.setdefault(word, None)
    return list(seen)


def build_tokenizer(vocabulary: Iterable[str]):
    """A ``PreTrainedTokenizerFast`` over ``SPECIAL_TOKENS`` + ``vocabulary`` with the chat
    template above."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(dict.fromkeys([*SPECIAL_TOKENS, *vocabulary]))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[USER, ASSISTANT],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tokenizer(texts: Iterable[str], placeholders: Iterable[str], directory: Path):
    """Build the tokenizer for ``texts`` and save it to ``directory``; returns it."""
    tokenizer = build_tokenizer(words(texts, placeholders))
    tokenizer.save_pretrained(directory)
    return tokenizer
