"""Errors of the model stage (data, training, evaluation).

    FraudError (core.errors)
    └── ModelStageError
        ├── DataError             unreadable table, wrong columns, empty window
        ├── UlbFormatError        a creditcard.csv that breaks the ULB schema
        ├── HyperparameterError   unknown key or a value that does not parse / is out of range
        └── ModelDirError         a model directory missing a file or holding bad weights

``http_status`` is 400 for all of them: each names bad input, never an internal fault.
"""

from __future__ import annotations

from core.errors import FraudError


class ModelStageError(FraudError, ValueError):
    http_status = 400


class DataError(ModelStageError):
    pass


class UlbFormatError(ModelStageError):
    pass


class HyperparameterError(ModelStageError):
    pass


class ModelDirError(ModelStageError):
    pass
