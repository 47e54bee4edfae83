"""The model as the server sees it: a verified package, backends picked on this hardware.

``load()`` verifies every checksum (a package that fails never becomes healthy), loads the
backends that can run the package's variants here, refuses any whose scores stray from the
package's reference scores alone or in any bucket size (``optimize.reference``: the score of
a row never depends on the batch it lands in), times the rest on this machine and picks one
per batch-size bucket (``optimize.selection.select``), then warms the picked backends.
Nothing here imports PyTorch unless a torch backend can run (a CUDA device with torch
installed). ``score`` is for one caller at a time (the batcher is that caller).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from optimize import reference
from optimize.backend_protocol import Backend
from optimize.backends import candidates
from optimize.buckets import bucket_for
from optimize.package_files import verify
from optimize.selection import BATCH_SIZES, select
from optimize.thresholds import decision_names
from serving.batch_limits import GPU_BACKENDS

GPU_BATCH_SIZES = (16_384, 65_536)

log = logging.getLogger("fraud.serving.scorer")


class Scorer:
    def __init__(
        self,
        package_dir: Path,
        thread_options: list[int] | None = None,
        timing_budget_s: float = 0.02,
    ) -> None:
        self.package_dir = Path(package_dir)
        self.thread_options = thread_options or [1]
        self.timing_budget_s = timing_budget_s
        self.manifest: dict[str, Any] = {}
        self.thresholds: dict[str, Any] = {}
        self.feature_names: list[str] = []
        self.mins = np.zeros(0, dtype=np.float32)
        self.maxs = np.zeros(0, dtype=np.float32)
        self._by_bucket: dict[int, Backend] = {}
        self._buckets: list[int] = []
        self.selection: dict[int, str] = {}
        self.timings: dict[str, dict[int, dict[str, float]]] = {}
        self.model_version = ""
        self.thresholds_version = ""
        self.precision = ""
        self.versions: dict[str, str] = {}  # what every response and decision record carries
        self._bands = (1.0, 1.0)  # (decline, review) score thresholds, set by load()

    def load(self) -> None:
        self.manifest = verify(self.package_dir)
        self.thresholds = json.loads((self.package_dir / "thresholds.json").read_text())
        # read on every request: plain attributes, not properties over the two dicts
        self.model_version = str(self.manifest.get("model_version", ""))
        self.thresholds_version = str(self.thresholds.get("version", ""))
        self.precision = str(self.manifest["precision"])
        self.versions = {
            "model_version": self.model_version,
            "thresholds_version": self.thresholds_version,
            "precision": self.precision,
        }
        bands = self.thresholds["bands"]
        self._bands = (float(bands["decline"]), float(bands["review"]))
        features = self.manifest["features"]
        self.feature_names = [f["name"] for f in features]
        self.mins = np.array([f["min"] for f in features], dtype=np.float32)
        self.maxs = np.array([f["max"] for f in features], dtype=np.float32)
        backends = candidates(
            self.package_dir, list(self.manifest["variants"]), self.thread_options
        )
        # on a GPU big batches cost little more than small ones: time them too
        gpu = any(b.name.startswith(GPU_BACKENDS) for b in backends)
        sizes = (*BATCH_SIZES, *GPU_BATCH_SIZES) if gpu else BATCH_SIZES
        check = reference.checker(self.package_dir, sizes)
        chosen, timings, failures = select(
            backends, len(features), sizes, self.timing_budget_s, check=check
        )
        self.timings = timings
        self._by_bucket = chosen
        self._buckets = sorted(chosen)  # bucket_for's search list, built once
        self.selection = {b: backend.name for b, backend in chosen.items()}
        log.info(
            "model loaded",
            extra={
                "fields": {
                    "model_version": self.model_version,
                    "thresholds_version": self.thresholds_version,
                    "precision": self.precision,
                    "selection": self.selection,
                    "load_failures": failures,
                }
            },
        )
        for bucket in self._by_bucket:  # warm-up: first runs allocate arenas
            self.score(np.zeros((bucket, len(features)), dtype=np.float32))

    def score(self, x: np.ndarray) -> np.ndarray:
        """(rows, n_features) float32 -> (rows,) float32 calibrated scores."""
        return self._by_bucket[bucket_for(len(x), self._buckets)].predict(x)

    def decisions(self, scores: np.ndarray) -> list[str]:
        return decision_names(scores, self._bands)
