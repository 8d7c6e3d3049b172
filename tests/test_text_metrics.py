"""The text metrics of ``mmgen eval``, on hand-computed cases and against brute force."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from mmgen.errors import ConfigError
from mmgen.metrics import score
from mmgen.metrics.text import _lcs


def test_hand_computed_values() -> None:
    predictions = ["the cat  sat", "A dog", "", "B) because", "(c)"]
    references = ["the cat sat", "a big dog", "x", "b", "C. cats"]
    got = score(["exact_match", "token_f1", "multiple_choice"], predictions, references)
    assert got["exact_match"] == pytest.approx(1 / 5)
    # token F1 per row: 1; P 1, R 2/3 -> 0.8; 0; P 1/2, R 1 -> 2/3; P 1, R 1/2 -> 2/3
    f1 = [1.0, 0.8, 0.0, 2 / 3, 2 / 3]
    assert got["token_f1"] == pytest.approx(sum(f1) / 5)
    # multiple choice: cat/a(dog)/""/b/c against the reference labels the/a/x/b/c
    assert got["multiple_choice"] == pytest.approx(4 / 5)


def test_error_rates_and_corpus_scores() -> None:
    got = score(["wer", "cer", "bleu", "chrf"], ["one two three four", "abc"],
                ["one two tree four", "abd"])  # fmt: skip
    assert got["wer"] == pytest.approx(2 / 5)  # one substitution in each row, 5 words
    assert got["cer"] == pytest.approx(2 / 20)  # an insertion and a substitution in 17 + 3
    perfect = score(["bleu", "chrf", "wer"], ["the cat sat on the mat"], ["the cat sat on the mat"])
    assert perfect == {"bleu": pytest.approx(100), "chrf": pytest.approx(100), "wer": 0.0}
    assert 0 < got["bleu"] < 100 and 0 < got["chrf"] < 100


def test_rouge_l_uses_the_longest_common_subsequence() -> None:
    rng = random.Random(0)
    for _ in range(200):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        brute = max((n for n in range(len(a) + 1) for sub in itertools.combinations(a, n)
                     if _is_subsequence(sub, b)), default=0)  # fmt: skip
        assert _lcs(a, b) == brute
    got = score(["rouge_l"], ["a b c d"], ["a x c d e"])["rouge_l"]
    precision, recall = 3 / 4, 3 / 5
    assert got == pytest.approx(2 * precision * recall / (precision + recall))


def _is_subsequence(sub, sequence) -> bool:
    it = iter(sequence)
    return all(any(x == y for y in it) for x in sub)


def test_unknown_metrics_and_empty_sets() -> None:
    with pytest.raises(ConfigError, match="unknown metric 'blue'; did you mean 'bleu'"):
        score(["blue"], ["a"], ["a"])
    assert math.isnan(score(["exact_match"], [], [])["exact_match"])
