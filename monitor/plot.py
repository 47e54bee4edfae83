"""One PNG per run: drift per feature per hour, and quality per labelled day."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write(
    path: Path,
    drift_by_hour: dict[str, dict[str, float]],
    threshold: float,
    days: dict[str, dict[str, float]],
    validation: dict[str, float],
) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display in a Processing job
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8))
    hours = sorted(drift_by_hour)
    features = sorted({f for h in hours for f in drift_by_hour[h]})
    for feature in features:
        series = [drift_by_hour[h].get(feature, float("nan")) for h in hours]
        # markers: an hourly run without history has one point per feature
        top.plot(range(len(hours)), series, label=feature, linewidth=1, marker=".")
    top.axhline(threshold, color="red", linestyle="--", label=f"threshold {threshold:g}")
    top.set_title("Baseline drift (L-inf CDF distance) per feature and hour (UTC)")
    ticks = list(range(0, len(hours), max(1, len(hours) // 8)))
    top.set_xticks(ticks, [hours[i] for i in ticks], fontsize=7)
    if features:
        top.legend(fontsize=6, ncol=3)
    _quality(bottom, days, validation)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _quality(ax: Any, days: dict[str, dict[str, float]], validation: dict[str, float]) -> None:
    ax.set_title("Model quality per labelled day (dashed: package validation)")
    if not days:
        ax.text(0.5, 0.5, "no labelled day in this window", ha="center", transform=ax.transAxes)
        return
    names = sorted(days)
    for metric in ("auc_roc", "average_precision", "card_precision_at_100"):
        values = [days[d].get(metric, float("nan")) for d in names]
        (line,) = ax.plot(names, values, marker="o", label=metric)
        if metric in validation:
            ax.axhline(validation[metric], color=line.get_color(), linestyle="--")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.tick_params(axis="x", labelrotation=30)
