"""PNG plots for the benchmark report (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PERCENTILES = (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"))


def latency_vs_load(http: dict[str, Any], rates: tuple[int, ...], out: Path) -> Path:
    """Open-loop latency percentiles against offered load, ours beside the references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PERCENTILES), figsize=(13, 4), sharey=True)
    for ax, (key, label) in zip(axes, PERCENTILES, strict=True):
        for name, cells in http["servers"].items():
            ys = [cells[f"open_{r}_json1"][key] / 1e3 for r in rates]
            ax.plot(rates, ys, marker="o", label=name)
        ax.set_title(f"{label} latency, single-record JSON")
        ax.set_xlabel("offered load (req/s, open loop)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms, log scale)")
    axes[0].legend()
    fig.suptitle(http["machine"], fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def latency_histogram(samples: dict[str, list[float]], cell: str, out: Path) -> Path:
    """Histogram (log-spaced bins) of every open-loop latency in ``cell`` per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = {k.split("/")[0]: v for k, v in samples.items() if k.endswith(f"/{cell}") and v}
    fig, ax = plt.subplots(figsize=(8, 4))
    if chosen:
        low = max(1.0, min(min(v) for v in chosen.values()))
        high = max(max(v) for v in chosen.values())
        bins = np.geomspace(low, high * 1.01, 80).tolist()
        for name, values in chosen.items():
            ax.hist(values, bins=bins, histtype="step", label=f"{name} (n={len(values):,})")
    ax.set_xscale("log")
    ax.set_xlabel("latency (us, log scale)")
    ax.set_ylabel("requests")
    ax.set_title(f"latency histogram, {cell}")
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
