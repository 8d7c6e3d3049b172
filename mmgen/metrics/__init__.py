"""Scores of generated answers against references (``mmgen eval``, ``eval.metrics`` in training).

    from mmgen.metrics import score
    score(["exact_match", "bleu"], predictions, references)   # {"exact_match": 0.5, "bleu": 41.2}

See ``mmgen/metrics/text.py`` for what each metric computes.
"""

from mmgen.metrics.text import LOWER_IS_BETTER, METRICS, check_metrics, score

__all__ = ["LOWER_IS_BETTER", "METRICS", "check_metrics", "score"]
