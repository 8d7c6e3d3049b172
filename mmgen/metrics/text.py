"""Text metrics of generated answers. Each takes the predictions and references (strings, in
order) and returns one number for the whole set:

- ``exact_match``: share of answers equal to the reference once whitespace is collapsed (what
  training's held-out accuracy reports);
- ``token_f1``: mean over rows of the F1 of the answer's and the reference's bags of lowercased
  words, punctuation stripped (SQuAD's measure, without its English article rule);
- ``bleu`` and ``chrf``: sacrebleu's corpus BLEU and chrF (0-100);
- ``rouge_l``: mean over rows of the F-measure of the longest common subsequence of words;
- ``wer`` and ``cer``: jiwer's corpus word and character error rates (lower is better), after
  lowercasing and collapsing whitespace, for transcription-like answers;
- ``multiple_choice``: accuracy of multiple-choice answers: the answer's first option label
  (``B``, ``(b)``, ``B.``, ``B) text``), else its first word, equals the reference's,
  case-insensitively.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

from mmgen.errors import ConfigError, did_you_mean

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _words(text: str) -> list[str]:
    return text.lower().translate(_PUNCTUATION).split()


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    pairs = zip(predictions, references, strict=True)
    return _mean([float(_collapse(p) == _collapse(r)) for p, r in pairs])


def token_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    scores = []
    for prediction, reference in zip(predictions, references, strict=True):
        said, wanted = _words(prediction), _words(reference)
        if not said or not wanted:
            scores.append(float(said == wanted))
            continue
        common = sum((Counter(said) & Counter(wanted)).values())
        if common == 0:
            scores.append(0.0)
            continue
        precision, recall = common / len(said), common / len(wanted)
        scores.append(2 * precision * recall / (precision + recall))
    return _mean(scores)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score)


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    scores = []
    for prediction, reference in zip(predictions, references, strict=True):
        said, wanted = _words(prediction), _words(reference)
        common = _lcs(said, wanted)
        if common == 0:
            scores.append(float(not said and not wanted))
            continue
        precision, recall = common / len(said), common / len(wanted)
        scores.append(2 * precision * recall / (precision + recall))
    return _mean(scores)


def _lcs(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (one row of the table at a time)."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def _transcripts(predictions: Sequence[str], references: Sequence[str]):
    # jiwer refuses empty references: a row whose reference is empty is scored on a placeholder
    said = [_collapse(p.lower()) for p in predictions]
    wanted = [_collapse(r.lower()) or "<empty>" for r in references]
    return wanted, said


def wer(predictions: Sequence[str], references: Sequence[str]) -> float:
    import jiwer

    wanted, said = _transcripts(predictions, references)
    return float(jiwer.wer(wanted, said))


def cer(predictions: Sequence[str], references: Sequence[str]) -> float:
    import jiwer

    wanted, said = _transcripts(predictions, references)
    return float(jiwer.cer(wanted, said))


_CHOICE = re.compile(r"^\W*\(?([A-Za-z0-9])(?:[).:\]]|\s|$)")


def _choice(text: str) -> str:
    text = text.strip()
    found = _CHOICE.match(text)
    if found:
        return found.group(1).lower()
    words = _words(text)
    return words[0] if words else ""


def multiple_choice(predictions: Sequence[str], references: Sequence[str]) -> float:
    pairs = zip(predictions, references, strict=True)
    return _mean([float(_choice(p) == _choice(r)) for p, r in pairs])


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


METRICS: dict[str, Callable[[Sequence[str], Sequence[str]], float]] = {
    "exact_match": exact_match,
    "token_f1": token_f1,
    "bleu": bleu,
    "chrf": chrf,
    "rouge_l": rouge_l,
    "wer": wer,
    "cer": cer,
    "multiple_choice": multiple_choice,
}
LOWER_IS_BETTER = frozenset({"wer", "cer"})


def check_metrics(names: Sequence[str]) -> list[str]:
    """``names`` when each is a metric; else a ``ConfigError`` naming the unknown one."""
    for name in names:
        if name not in METRICS:
            raise ConfigError(
                f"unknown metric {name!r}{did_you_mean(name, list(METRICS), listing=True)}"
            )
    return list(names)


def score(
    names: Sequence[str], predictions: Sequence[str], references: Sequence[str]
) -> dict[str, float]:
    """Each metric of ``names`` over the pairs (NaN for no pairs)."""
    check_metrics(names)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        return {name: float("nan") for name in names}
    return {name: METRICS[name](predictions, references) for name in names}
