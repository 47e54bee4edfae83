"""The training loop: seeded, checkpointed every epoch, resumable to the same final weights.

A checkpoint holds everything that decides what happens next (weights, optimizer state, the
shuffling generator, torch's global RNG for dropout, early-stopping state), written to a temp
file and renamed, so a job killed at any moment resumes from the last complete epoch and ends
with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from tqdm import tqdm

from core.features import FEATURE_NAMES
from model.hyperparameters import Hyperparameters
from model.network import FraudNet

# derived inputs the network computes itself (indices into FEATURE_NAMES)
LOG_COLUMNS = [
    FEATURE_NAMES.index(n)
    for n in FEATURE_NAMES
    if n == "amount" or n.startswith(("customer_", "terminal_count"))
]
RATIO_PAIRS = [
    (FEATURE_NAMES.index("amount"), FEATURE_NAMES.index(f"customer_mean_amount_{n}d"))
    for n in (1, 7, 30)
]


@dataclasses.dataclass
class FitResult:
    model: FraudNet
    best_epoch: int  # epochs of training that gave the kept weights
    history: list[dict[str, float]]


def build_network(hp: Hyperparameters) -> FraudNet:
    return FraudNet(
        n_features=len(FEATURE_NAMES),
        log_columns=LOG_COLUMNS,
        ratio_pairs=RATIO_PAIRS,
        hidden=list(hp.hidden),
        dropout=hp.dropout,
        n_members=hp.n_members,
        activation=hp.activation,
    )


def cosine_lr(hp: Hyperparameters, step: int, steps_per_epoch: int) -> float:
    """Per-step cosine decay from ``learning_rate`` to 0 over ``max_epochs`` epochs. The
    schedule spans max_epochs whatever the run's length, so a final run that stops at the
    validation run's best epoch follows the same trajectory; it depends on the step only, so
    a resumed run needs no extra state."""
    total = hp.max_epochs * steps_per_epoch
    return hp.learning_rate * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def network_config(hp: Hyperparameters) -> dict[str, object]:
    """Constructor arguments of the network, as saved beside the weights."""
    return {
        "n_features": len(FEATURE_NAMES),
        "log_columns": LOG_COLUMNS,
        "ratio_pairs": [list(p) for p in RATIO_PAIRS],
        "hidden": list(hp.hidden),
        "dropout": hp.dropout,
        "n_members": hp.n_members,
        "activation": hp.activation,
    }


def predict_logits(model: FraudNet, x: np.ndarray, batch: int = 65_536) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            out.append(model.logits(torch.from_numpy(x[i : i + batch]).float()).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _save_atomic(state: dict[str, object], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def fit(
    hp: Hyperparameters,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    checkpoint: Path | None = None,
    label: str = "train",
    progress: bool = True,
) -> FitResult:
    """Train for ``epochs`` epochs; with validation rows, keep the best epoch by AP and stop
    after ``hp.patience`` epochs without improvement."""
    torch.manual_seed(hp.seed)
    model = build_network(hp)
    with torch.no_grad():
        inputs = model.inputs(torch.from_numpy(x_train).float())
        model.center.copy_(inputs.mean(0))
        model.scale.copy_(inputs.std(0).clamp_min(1e-6))
    optim = torch.optim.Adam(model.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
    shuffler = torch.Generator().manual_seed(hp.seed)
    state: dict[str, object] = {
        "epoch": 0,
        "best_ap": -1.0,
        "best_epoch": 0,
        "bad": 0,
        "best_weights": None,
        "history": [],
    }

    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(saved["model"])
        optim.load_state_dict(saved["optim"])
        shuffler.set_state(saved["shuffler"])
        torch.set_rng_state(saved["torch_rng"])
        state = saved["loop"]

    xt = torch.from_numpy(x_train).float()
    yt = torch.from_numpy(y_train.astype(np.float32))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    start = int(state["epoch"])  # type: ignore[call-overload]
    bar = tqdm(
        range(start, epochs),
        desc=label,
        initial=start,
        total=epochs,
        disable=not progress,
        leave=False,
    )
    for epoch in bar:
        if int(state["bad"]) >= hp.patience:  # type: ignore[call-overload]
            break
        model.train()
        perm = torch.randperm(len(xt), generator=shuffler)
        total = 0.0
        steps_per_epoch = math.ceil(len(perm) / hp.batch_size)
        for b, i in enumerate(range(0, len(perm), hp.batch_size)):
            idx = perm[i : i + hp.batch_size]
            for group in optim.param_groups:
                group["lr"] = cosine_lr(hp, epoch * steps_per_epoch + b, steps_per_epoch)
            # each member gets its own loss: independent models trained on the same batches
            member_logits = model.member_logits(xt[idx])  # (members, batch)
            loss = loss_fn(member_logits, yt[idx].expand_as(member_logits)) * hp.n_members
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            total += float(loss.detach()) * len(idx)
        record = {"epoch": epoch + 1, "loss": total / len(xt) / hp.n_members}
        if x_val is not None and y_val is not None:
            ap = float(average_precision_score(y_val, predict_logits(model, x_val)))
            record["val_ap"] = ap
            if ap > float(state["best_ap"]):  # type: ignore[arg-type]
                state.update(
                    best_ap=ap,
                    best_epoch=epoch + 1,
                    bad=0,
                    best_weights={k: v.clone() for k, v in model.state_dict().items()},
                )
            else:
                state["bad"] = int(state["bad"]) + 1  # type: ignore[call-overload]
        state["history"].append(record)  # type: ignore[attr-defined]
        state["epoch"] = epoch + 1
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
        if checkpoint is not None:
            _save_atomic(
                {
                    "model": model.state_dict(),
                    "optim": optim.state_dict(),
                    "shuffler": shuffler.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "loop": state,
                },
                checkpoint,
            )
    bar.close()
    best_epoch = int(state["epoch"])  # type: ignore[call-overload]
    if state["best_weights"] is not None:
        model.load_state_dict(state["best_weights"])  # type: ignore[arg-type]
        best_epoch = int(state["best_epoch"])  # type: ignore[call-overload]
    model.eval()
    return FitResult(model=model, best_epoch=best_epoch, history=list(state["history"]))  # type: ignore[call-overload]
