"""``fraud evaluate``: our model beside XGBoost on the handbook's test protocol (model/dataset.py).

Single split: the trained model directory scores the test week once; XGBoost (committed
tuned config) is trained on the same training week in the same run. Prequential: for each
of ``n_folds`` folds stepping back 7 days and each seed, both models are retrained with the
settings chosen on validation (our epochs come from the model directory) and scored on the
fold's test week; we report mean and standard deviation, and the paired difference
ours - XGBoost (the claim "beats" needs mean difference > its standard deviation).

The prequential fold x seed runs are independent: locally they run as ``workers`` processes;
across machines (a Processing job over N instances) each runs one ``Shard`` (tasks ``index``,
``index + count``, ...) with ``run_shard``; ``evaluate(..., shard_runs=...)`` then merges
them into the result a single run gives (each run is a pure function of its task: same
numbers whichever process or instance ran it). Each shard's runs name their fold start and
seed, and a merge refuses runs of another fold plan.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from model import model_dir, xgboost_baseline
from model.dataset import day_index, fold_starts, make_split, with_features
from model.hyperparameters import Hyperparameters
from model.metrics import score_report
from model.trainer import fit, predict_logits

OURS, XGB = "fraudnet", "xgboost"
METRICS = ("auc_roc", "average_precision", "card_precision_at_100")


@dataclasses.dataclass
class Curves:
    """Test-week labels and scores per model, for the precision-recall plot."""

    labels: np.ndarray
    scores: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Shard:
    """Tasks ``index``, ``index + count``, ... of the prequential plan."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: expected 0 <= index < count")

    @classmethod
    def parse(cls, text: str, resource_config: Path) -> Shard:
        """``K/N``, or ``auto``: this host's place in a Processing job's hosts
        (``/opt/ml/config/resourceconfig.json``: current_host, hosts)."""
        if text == "auto":
            config = json.loads(resource_config.read_text())
            hosts = sorted(config["hosts"])
            return cls(hosts.index(config["current_host"]), len(hosts))
        index, sep, count = text.partition("/")
        if not sep:
            raise ValueError(f"--shard expects K/N or auto, got {text!r}")
        return cls(int(index), int(count))


@dataclasses.dataclass
class _FoldTask:
    """One prequential fold x seed: both models trained and scored (picklable for a pool)."""

    hp: Hyperparameters
    epochs: int
    xgb_params: dict[str, object]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    days: np.ndarray
    cards: np.ndarray


def _run_fold(task: _FoldTask) -> tuple[dict[str, float], dict[str, float]]:
    # one thread per worker: two single-threaded fits beat one two-threaded fit at this size
    torch.set_num_threads(1)
    net = fit(task.hp, task.x_train, task.y_train, epochs=task.epochs, progress=False).model
    ours = score_report(task.days, task.cards, task.y_test, predict_logits(net, task.x_test))
    booster = xgboost_baseline.fit_xgboost(
        task.x_train, task.y_train, task.xgb_params, seed=task.hp.seed, n_jobs=1
    )
    theirs = score_report(
        task.days, task.cards, task.y_test, xgboost_baseline.score(booster, task.x_test)
    )
    return ours, theirs


def _run_tasks(
    tasks: list[_FoldTask], workers: int, progress: bool
) -> list[tuple[dict[str, float], dict[str, float]]]:
    """Results in task order, whatever the order of completion (so runs pair up by fold)."""
    bar = tqdm(
        total=len(tasks), desc="prequential folds x seeds", disable=not progress, leave=False
    )
    if workers <= 1:
        out = []
        for task in tasks:
            out.append(_run_fold(task))
            bar.update()
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_run_fold, task) for task in tasks]
            for future in as_completed(futures):
                future.result()
                bar.update()
            out = [f.result() for f in futures]
    bar.close()
    return out


def _known_runs(
    shard_runs: list[dict[str, Any]], plan: list[dict[str, Any]]
) -> dict[int, tuple[dict[str, float], dict[str, float]]]:
    """Runs from shard files by task index, each checked against this run's fold plan."""
    known = {}
    for run in shard_runs:
        i = int(run["task"])
        if i >= len(plan) or {"fold": run["fold"], "seed": run["seed"]} != plan[i]:
            raise ValueError(
                f"shard run {i} (fold {run['fold']}, seed {run['seed']}) is not task {i} of "
                "this evaluation's plan: rerun the shards with the same --folds and --seeds"
            )
        known[i] = (run[OURS], run[XGB])
    return known


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in METRICS:
        values = np.array([r[m] for r in runs])
        out[m] = float(values.mean())
        out[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


@dataclasses.dataclass
class _Plan:
    """The data, model and prequential tasks of one evaluation (tasks in a fixed order)."""

    model: Any
    hp: Hyperparameters
    xgb_params: dict[str, object]
    x_all: np.ndarray
    y_all: np.ndarray
    days: np.ndarray
    cards: np.ndarray
    df: pd.DataFrame
    tasks: list[_FoldTask]

    @property
    def names(self) -> list[dict[str, Any]]:
        return [{"fold": t.hp.train_start.isoformat(), "seed": t.hp.seed} for t in self.tasks]


def _plan(
    df: pd.DataFrame,
    trained_dir: Path,
    n_folds: int,
    seeds: tuple[int, ...],
    folds: bool,
    train_start: dt.date | None = None,
) -> _Plan:
    model, description = model_dir.load(trained_dir)
    hp = Hyperparameters.from_strings(dict(description["hyperparameters"]))  # type: ignore[call-overload]
    if train_start is not None:
        # the model as trained, scored on another test week (XGBoost retrained for it)
        hp = dataclasses.replace(hp, train_start=train_start)
    epochs = int(description["epochs"])  # type: ignore[call-overload]
    xgb_params = xgboost_baseline.load_config()
    df, x_all = with_features(df)
    x_all = x_all.astype(np.float32)
    y_all = df["is_fraud"].to_numpy().astype(np.int64)
    days = day_index(df)
    cards = df["customer_id"].to_numpy()
    tasks = [
        _FoldTask(
            hp=dataclasses.replace(hp, seed=seed, train_start=start),
            epochs=epochs,
            xgb_params=xgb_params,
            x_train=x_all[fold.train],
            y_train=y_all[fold.train],
            x_test=x_all[fold.test],
            y_test=y_all[fold.test],
            days=days[fold.test],
            cards=cards[fold.test],
        )
        for start in (fold_starts(hp.train_start, n_folds) if folds else [])
        for fold in [make_split(df, start)]
        for seed in seeds
    ]
    return _Plan(model, hp, xgb_params, x_all, y_all, days, cards, df, tasks)


def run_shard(
    df: pd.DataFrame,
    trained_dir: Path,
    shard: Shard,
    n_folds: int = 4,
    seeds: tuple[int, ...] = (0, 1, 2),
    progress: bool = True,
    workers: int = 2,
) -> dict[str, Any]:
    """This shard's prequential runs, each named by task index, fold start and seed."""
    plan = _plan(df, trained_dir, n_folds, seeds, folds=True)
    mine = list(range(shard.index, len(plan.tasks), shard.count))
    done = _run_tasks([plan.tasks[i] for i in mine], workers, progress)
    return {
        "shard": {"index": shard.index, "count": shard.count},
        "runs": [
            {"task": i, **plan.names[i], OURS: ours_run, XGB: xgb_run}
            for i, (ours_run, xgb_run) in zip(mine, done, strict=True)
        ],
    }


def evaluate(
    df: pd.DataFrame,
    trained_dir: Path,
    n_folds: int = 4,
    seeds: tuple[int, ...] = (0, 1, 2),
    prequential: bool = True,
    progress: bool = True,
    workers: int = 2,
    shard_runs: list[dict[str, Any]] | None = None,
    train_start: dt.date | None = None,
) -> tuple[dict[str, object], Curves]:
    """The single split, and the prequential folds unless ``prequential`` is false; runs in
    ``shard_runs`` (from ``run_shard``) are taken as they are, the rest run here.
    ``train_start`` moves the protocol (default: the model's own), so two models can be
    compared on the same weeks."""
    plan = _plan(df, trained_dir, n_folds, seeds, folds=prequential, train_start=train_start)
    hp, x_all, y_all = plan.hp, plan.x_all, plan.y_all

    def report(split_test: np.ndarray, scores: np.ndarray) -> dict[str, float]:
        return score_report(
            plan.days[split_test], plan.cards[split_test], y_all[split_test], scores
        )

    split = make_split(plan.df, hp.train_start)
    ours = predict_logits(plan.model, x_all[split.test])
    booster = xgboost_baseline.fit_xgboost(x_all[split.train], y_all[split.train], plan.xgb_params)
    theirs = xgboost_baseline.score(booster, x_all[split.test])
    result: dict[str, object] = {
        "protocol": {
            "train_start": hp.train_start.isoformat(),
            "train_days": 7,
            "delay_days": 7,
            "test_days": 7,
            "test_rows": len(split.test),
            "test_frauds": int(y_all[split.test].sum()),
        },
        "models": {OURS: report(split.test, ours), XGB: report(split.test, theirs)},
    }
    curves = Curves(labels=y_all[split.test], scores={OURS: ours, XGB: theirs})
    if not prequential:
        return result, curves

    tasks = plan.tasks
    known = _known_runs(shard_runs or [], plan.names)
    todo = [i for i in range(len(tasks)) if i not in known]
    for i, run in zip(todo, _run_tasks([tasks[i] for i in todo], workers, progress), strict=True):
        known[i] = run
    runs: dict[str, list[dict[str, float]]] = {OURS: [], XGB: []}
    for ours_run, xgb_run in (known[i] for i in range(len(tasks))):
        runs[OURS].append(ours_run)
        runs[XGB].append(xgb_run)
    diffs = [{m: a[m] - b[m] for m in METRICS} for a, b in zip(runs[OURS], runs[XGB], strict=True)]
    result["prequential"] = {
        "folds": [s.isoformat() for s in fold_starts(hp.train_start, n_folds)],
        "seeds": list(seeds),
        "models": {name: _summary(r) for name, r in runs.items()},
        "difference": _summary(diffs),
        "beats": {m: bool(_summary(diffs)[m] > _summary(diffs)[f"{m}_std"]) for m in METRICS},
    }
    return result, curves


def format_table(result: dict[str, object]) -> str:
    lines = [f"{'model':<12}{'AUC-ROC':>10}{'AP':>10}{'CP@100':>10}", "single split (test week)"]
    for name, m in result["models"].items():  # type: ignore[attr-defined]
        lines.append(f"{name:<12}" + "".join(f"{m[k]:>10.4f}" for k in METRICS))
    pq: Any = result.get("prequential")
    if pq:
        n_folds, n_seeds = len(pq["folds"]), len(pq["seeds"])
        lines.append(f"prequential: {n_folds} folds x {n_seeds} seeds, mean ± std")
        for name, m in [*pq["models"].items(), ("ours - xgb", pq["difference"])]:
            lines.append(
                f"{name:<12}"
                + "".join(
                    f"{m[k]:>+8.4f}±{m[k + '_std']:.4f}"
                    if name == "ours - xgb"
                    else f"{m[k]:>7.4f}±{m[k + '_std']:.3f}"
                    for k in METRICS
                )
            )
    return "\n".join(lines)


def plot_pr_curves(curves: Curves, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, scores in curves.scores.items():
        precision, recall, _ = precision_recall_curve(curves.labels, scores)
        ap = average_precision_score(curves.labels, scores)
        ax.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"Precision-recall on the test week ({dt.date.today()})")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
