"""What every scoring backend is, and the names the graph and the backends agree on.

Imports nothing heavy: the server, the selection and the build tools all read it.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

INPUT_NAME, OUTPUT_NAME = "features", "score"  # the ONNX graph's input and output
BATCH_RANGE = (1, 65_536)  # the batch sizes an engine/profile must accept


class Backend(Protocol):
    """``load`` once, then ``predict((batch, n_features) float32) -> (batch,) float32``."""

    name: str

    def load(self) -> None: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class RuntimeStatus:
    name: str
    available: bool
    reason: str
    verified_on_hardware: bool
