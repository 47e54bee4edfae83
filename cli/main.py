"""``fraud``: one subcommand per stage.

Settings come from flags, with one environment variable read here and nowhere else:
``FRAUD_ARTIFACTS`` (default ``./artifacts``), the git-ignored directory where ``data``,
``train`` and ``evaluate`` meet when run with no arguments. Errors this project raises on
purpose print one line naming the problem and exit 1; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cli.store_commands import add_store_parsers
from core.errors import FraudError
from deploy.cli import add_deploy_parser
from model.drift_scenarios import add_arguments as add_drift_arguments
from monitor.main import add_parser as add_monitor_parser
from optimize.precision import PRECISIONS

# a Processing job's hosts: --shard auto takes this host's place among them
RESOURCE_CONFIG = Path("/opt/ml/config/resourceconfig.json")


def _paths(artifacts: Path) -> dict[str, Path]:
    return {
        "data": artifacts / "data" / "transactions.parquet",
        "model": artifacts / "model",
        "checkpoints": artifacts / "checkpoints",
        "evaluation": artifacts / "evaluation",
        "onnx": artifacts / "export" / "model.onnx",
        "package": artifacts / "package",
        "tarball": artifacts / "model.tar.gz",
    }


def cmd_data(args: argparse.Namespace) -> int:
    if args.ulb is not None:
        from model.ulb import read_ulb

        features, labels = read_ulb(args.ulb)
        print(
            json.dumps(
                {
                    "n_transactions": len(labels),
                    "n_frauds": int(labels.sum()),
                    "fraud_rate": round(float(labels.mean()), 6) if len(labels) else 0.0,
                    "n_features": features.shape[1],
                }
            )
        )
        return 0
    from model import drift_scenarios
    from model.simulator import SimulatorConfig, simulate, summarize

    cfg = SimulatorConfig(
        n_customers=args.customers,
        n_terminals=args.terminals,
        n_days=args.days,
        start_date=args.start_date,
        radius=args.radius,
        seed=args.seed,
    )
    started = time.perf_counter()
    df = simulate(cfg)
    drift = drift_scenarios.from_arguments(args, args.seed)
    if drift is not None:
        df = drift_scenarios.apply_drift(df, drift)
    out = args.out or _paths(args.artifacts)["data"]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    report = summarize(df)
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["path"] = str(out)
    print(json.dumps(report))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from model.dataset import read_transactions
    from model.hyperparameters import Hyperparameters, parse_pairs
    from model.train import train_model

    paths = _paths(args.artifacts)
    hp = Hyperparameters.from_strings(parse_pairs(args.set))
    df = read_transactions(args.data or paths["data"])
    out = args.out or paths["model"]
    description = train_model(
        df, hp, out, args.checkpoints or paths["checkpoints"], progress=not args.quiet
    )
    print(
        json.dumps(
            {
                "model_dir": str(out),
                "epochs": description["epochs"],
                "validation_metrics": description["validation_metrics"],
            }
        )
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from model.dataset import read_transactions
    from model.evaluate import evaluate, format_table, plot_pr_curves

    paths = _paths(args.artifacts)
    df = read_transactions(args.data or paths["data"])
    seeds = tuple(range(args.seeds))
    out_dir = args.out or paths["evaluation"]
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.shard:
        return _evaluate_shard(args, df, paths["model"], seeds, out_dir)
    result, curves = evaluate(
        df,
        args.model or paths["model"],
        n_folds=args.folds,
        seeds=seeds,
        prequential=args.folds > 0,
        progress=not args.quiet,
        workers=args.workers,
        shard_runs=[r for p in args.shard_runs for r in json.loads(p.read_text())["runs"]],
        train_start=args.train_start,
    )
    (out_dir / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_pr_curves(curves, out_dir / "precision_recall.png")
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result))
        print(f"written: {out_dir / 'evaluation.json'}, {out_dir / 'precision_recall.png'}")
    return 0


def _evaluate_shard(
    args: argparse.Namespace, df: object, model: Path, seeds: tuple[int, ...], out_dir: Path
) -> int:
    from model.evaluate import Shard, run_shard

    try:
        shard = Shard.parse(args.shard, RESOURCE_CONFIG)
    except (ValueError, OSError, KeyError) as exc:
        print(f"fraud evaluate: error: --shard {args.shard}: {exc}", file=sys.stderr)
        return 1
    runs = run_shard(
        df,
        args.model or model,
        shard,
        n_folds=args.folds,
        seeds=seeds,
        progress=not args.quiet,
        workers=args.workers,
    )
    path = out_dir / f"shard-{shard.index}-of-{shard.count}.json"
    path.write_text(json.dumps(runs, indent=2) + "\n")
    print(path)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from model.dataset import read_transactions
    from model.hyperparameters import Hyperparameters, parse_pairs
    from model.tuning import NN_CANDIDATES, to_json, tune_nn, tune_xgboost, validation_folds

    paths = _paths(args.artifacts)
    hp = Hyperparameters.from_strings(parse_pairs(args.set))
    folds = validation_folds(read_transactions(args.data or paths["data"]), hp, args.folds)
    if args.model == "xgboost":
        results = tune_xgboost(folds, args.trials, seed=args.seed)
        if args.write is not None:
            args.write.write_text(json.dumps(results[0]["params"], indent=2) + "\n")
    else:
        results = tune_nn(folds, hp, NN_CANDIDATES, seeds=tuple(range(args.seeds)))
    print(to_json(results))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from model import model_dir
    from optimize.export import check_parity, export_onnx

    paths = _paths(args.artifacts)
    trained = args.model or paths["model"]
    model, description = model_dir.load(trained)
    rows = model_dir.load_rows(trained)
    out = args.out or paths["onnx"]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    export_onnx(model, tmp)
    ranges = [(f["min"], f["max"]) for f in description["features"]]  # type: ignore[attr-defined]
    report = check_parity(model, tmp, rows["validation_x"], ranges)
    os.replace(tmp, out)
    print(json.dumps({"onnx": str(out), "parity": report}))
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from optimize.package import build_package
    from optimize.package_files import archive, verify

    paths = _paths(args.artifacts)
    onnx_path = args.onnx or (paths["onnx"] if paths["onnx"].exists() else None)
    out = args.out or paths["package"]
    started = time.perf_counter()
    manifest = build_package(args.model or paths["model"], out, onnx_path, precision=args.precision)
    verify(out)
    archive(out, args.tarball or paths["tarball"])
    guard = manifest["guard"]["variants"]
    print(
        json.dumps(
            {
                "model_version": manifest["model_version"],
                "precision": manifest["precision"],
                "variants": list(manifest["variants"]),
                "rejected": {n: g["reason"] for n, g in guard.items() if not g["accepted"]},
                "seconds": round(time.perf_counter() - started, 1),
                "tarball": str(args.tarball or paths["tarball"]),
            }
        )
    )
    print(out)
    return 0


def cmd_package_verify(args: argparse.Namespace) -> int:
    from optimize.package_files import verify

    manifest = verify(args.dir)
    print(
        f"{args.dir}: ok (model_version {manifest['model_version']}, "
        f"{len(manifest['files'])} files, variants {', '.join(manifest['variants'])})"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from serving.entrypoint import run

    model_dir = args.model_dir or _paths(args.artifacts)["package"]
    if not (model_dir / "manifest.json").exists():
        print(
            f"fraud serve: error: {model_dir} holds no model package; build one with "
            "`fraud data && fraud train && fraud export && fraud optimize` (or make serve)",
            file=sys.stderr,
        )
        return 1
    return run(os.environ, model_dir=model_dir, port=args.port, workers=args.workers)


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-score a logged request's decisions; exit 0 only when every one matches."""
    from serving.replay import run

    package = args.model_dir or _paths(args.artifacts)["package"]
    report = run(args.log, args.request_id, package)
    print(json.dumps(report, indent=2))
    return 0 if report["all_match"] else 1


def cmd_benchmark(args: argparse.Namespace) -> int:
    """``fraud bench`` and ``fraud loadtest``: the benchmark suite or the Locust load test
    (``make bench`` / ``make loadtest``) on the artifacts' package; other flags pass through."""
    import importlib

    module = importlib.import_module(
        "benchmarks.suite" if args.command == "bench" else "benchmarks.loadtest"
    )
    rest = list(args.rest)
    if "--package" not in rest:
        rest = ["--package", str(_paths(args.artifacts)["package"]), *rest]
    return int(module.main(rest))


def build_parser(artifacts: Path) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraud", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=artifacts,
        help=f"artefacts directory (default {artifacts})",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="simulate transactions (or check a ULB creditcard.csv)")
    p.add_argument("--customers", type=int, default=5_000)
    p.add_argument("--terminals", type=int, default=10_000)
    p.add_argument("--days", type=int, default=183)
    p.add_argument("--start-date", type=dt.date.fromisoformat, default=dt.date(2018, 4, 1))
    p.add_argument("--radius", type=float, default=5.0)
    p.add_argument(
        "--seed",
        type=int,
        default=8,
        help="default 8: see README for the spread of totals over seeds",
    )
    p.add_argument("--out", type=Path, help="Parquet file to write")
    p.add_argument("--ulb", type=Path, help="load and check a ULB creditcard.csv instead")
    add_drift_arguments(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train and calibrate the PyTorch model")
    p.add_argument("--data", type=Path, help="transactions (.parquet/.csv or a directory)")
    p.add_argument("--out", type=Path, help="model directory to write")
    p.add_argument("--checkpoints", type=Path, help="checkpoint directory (resumes from it)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="hyperparameter override, e.g. --set n_members=5",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test-week metrics beside XGBoost")
    p.add_argument("--data", type=Path)
    p.add_argument("--model", type=Path, help="trained model directory")
    p.add_argument("--out", type=Path, help="directory for evaluation.json and the PR plot")
    p.add_argument("--folds", type=int, default=4, help="prequential folds (0: single split)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per prequential fold")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=int, default=2, help="processes for the prequential runs")
    p.add_argument(
        "--train-start",
        type=dt.date.fromisoformat,
        help="protocol start (default: the model's); compares models on the same weeks",
    )
    p.add_argument("--shard", help="K/N or auto: run only this shard's prequential runs")
    p.add_argument(
        "--shard-runs", type=Path, action="append", default=[], help="merge a shard's runs"
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("tune", help="hyperparameter search on the validation folds only")
    p.add_argument("model", choices=["xgboost", "nn"])
    p.add_argument("--data", type=Path)
    p.add_argument("--folds", type=int, default=4, help="validation folds (7 days apart)")
    p.add_argument("--trials", type=int, default=30, help="xgboost: random trials")
    p.add_argument("--seeds", type=int, default=2, help="nn: seeds per candidate")
    p.add_argument("--seed", type=int, default=0, help="xgboost: search seed")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="base hyperparameters (train_start moves the folds)",
    )
    p.add_argument("--write", type=Path, help="xgboost: write the best config here")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("export", help="export the trained model to ONNX and check parity")
    p.add_argument("--model", type=Path, help="trained model directory")
    p.add_argument("--out", type=Path, help="ONNX file to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("optimize", help="optimise, guard, time and package the model")
    p.add_argument("--model", type=Path, help="trained model directory")
    p.add_argument("--onnx", type=Path, help="exported ONNX (default: the export step's)")
    p.add_argument("--out", type=Path, help="package directory to write")
    p.add_argument("--tarball", type=Path, help="model.tar.gz to write")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="the package's one precision for every batch size (a reduced one must pass the "
        "accuracy guard; int8_dynamic never serves: its scores depend on the batch)",
    )
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("package", help="model package tools")
    package_sub = p.add_subparsers(dest="package_command", required=True)
    v = package_sub.add_parser("verify", help="check every checksum and the parity figures")
    v.add_argument("dir", type=Path)
    v.set_defaults(func=cmd_package_verify)

    p = sub.add_parser("serve", help="serve the model package (SageMaker's HTTP contract)")
    p.add_argument("--model-dir", type=Path, help="model package (default: the demo package)")
    p.add_argument("--port", type=int, help="port (default SAGEMAKER_BIND_TO_PORT or 8080)")
    p.add_argument(
        "--workers",
        type=int,
        help="worker processes (default SAGEMAKER_MODEL_SERVER_WORKERS or one per core)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("replay", help="reproduce a logged decision from the decision log")
    p.add_argument("request_id", help="the request id (X-Amzn-SageMaker-Inference-Id or ours)")
    p.add_argument("--log", type=Path, required=True, help="the server's log (JSON lines)")
    p.add_argument("--model-dir", type=Path, help="model package (default: the demo package)")
    p.set_defaults(func=cmd_replay)

    add_deploy_parser(sub)
    add_monitor_parser(sub)
    add_store_parsers(sub, artifacts)

    for name, what in (("bench", "make bench"), ("loadtest", "make loadtest")):
        p = sub.add_parser(name, help=f"{what}: flags after it pass through (--help for them)")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=cmd_benchmark)
    return parser


def run(argv: Sequence[str] | None, artifacts: Path) -> int:
    args = build_parser(artifacts).parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except FraudError as exc:
        print(f"fraud {args.command}: error: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    artifacts = Path(os.environ.get("FRAUD_ARTIFACTS", "artifacts"))
    return run(argv, artifacts)


if __name__ == "__main__":
    sys.exit(main())
