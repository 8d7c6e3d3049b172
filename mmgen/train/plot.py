"""The end-of-run picture: train/eval loss and held-out accuracy against the step, as a PNG
beside ``metrics.jsonl`` (people would rather look than read)."""

from __future__ import annotations

from pathlib import Path

from mmgen.train.metrics import read_metrics

PLOT_FILE = "metrics.png"


def plot_metrics(metrics_path: Path, out: Path | None = None) -> Path:
    """Draw the curves of ``metrics_path`` into ``out`` (default: ``metrics.png`` beside it)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed: training machines have none
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    out = Path(out) if out is not None else Path(metrics_path).with_name(PLOT_FILE)

    def series(kind: str, key: str) -> tuple[list[int], list[float]]:
        pairs = [(r["step"], r[key]) for r in records if r["kind"] == kind and key in r]
        return [s for s, _ in pairs], [v for _, v in pairs]

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for kind, style in (("train", "-"), ("eval", "o-")):
        steps, values = series(kind, "loss")
        if steps:
            left.plot(steps, values, style, label=f"{kind} loss", markersize=3)
    left.set_xlabel("step")
    left.set_ylabel("loss")
    if any(r.get("loss", 1) > 0 for r in records):
        left.set_yscale("log")
    left.grid(True, alpha=0.3)
    left.legend()
    for kind, style in (("eval", "o-"), ("test", "s")):
        steps, values = series(kind, "accuracy")
        if steps:
            right.plot(steps, [100 * v for v in values], style, label=f"{kind} exact match")
    right.set_xlabel("step")
    right.set_ylabel("held-out exact match (%)")
    right.set_ylim(-2, 102)
    right.grid(True, alpha=0.3)
    if right.get_legend_handles_labels()[0]:
        right.legend(loc="lower right")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out
