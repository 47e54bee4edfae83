"""Backend table: rows/s, p50 and p99 per backend x variant x batch size, in one run.

Reference: PyTorch eager (the packaged weights in the network definition, all cores),
measured in the same run; every row's ratio is p50(PyTorch eager) / p50(row) at the same
batch size. Writes ``benchmarks/results/backends-<timestamp>.json`` and prints a markdown
table (paste into RESULTS.md with the machine line it prints).

    python -m benchmarks.backend_table [--package artifacts/package] [--budget-s 1.0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from benchmarks.report import machine, save
from core.cpus import cpu_count
from core.feature_names import N_FEATURES
from optimize.backends import candidates
from optimize.package_files import verify
from optimize.selection import BATCH_SIZES, time_backend

REFERENCE = f"torch-cpu/fp32/t{cpu_count()}"


def run(package_dir: Path, budget_s: float) -> dict[str, object]:
    manifest = verify(package_dir)
    table: dict[str, dict[int, dict[str, float]]] = {}
    for backend in candidates(package_dir, list(manifest["variants"]), include_torch_cpu=True):
        backend.load()
        table[backend.name] = time_backend(backend, N_FEATURES, BATCH_SIZES, budget_s)
    return {
        "machine": machine(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "model_version": manifest["model_version"],
        "reference": REFERENCE,
        "table": table,
    }


def markdown(result: dict[str, object]) -> str:
    table: dict[str, dict[int, dict[str, float]]] = result["table"]  # type: ignore[assignment]
    ref = table[REFERENCE]
    lines = [
        f"Machine: {result['machine']}. Reference: {REFERENCE} (PyTorch eager).",
        "",
        "| backend | batch | rows/s | p50 us | p99 us | speed-up vs PyTorch eager |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for batch in BATCH_SIZES:
        for name, rows in sorted(table.items(), key=lambda kv: kv[1][batch]["p50_us"]):
            r = rows[batch]
            lines.append(
                f"| {name} | {batch} | {r['rows_per_s']:,.0f} | {r['p50_us']:,.1f} | "
                f"{r['p99_us']:,.1f} | {ref[batch]['p50_us'] / r['p50_us']:.2f}x |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("artifacts/package"))
    parser.add_argument("--budget-s", type=float, default=1.0, help="timing per cell")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    result = run(args.package, args.budget_s)
    save(result, args.out_dir, "backends")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
