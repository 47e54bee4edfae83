"""What can stop a benchmark, so every runner fails closed with a clear message.

BenchError                      exit status 2 from every benchmark command
├── ToolMissing                 wrk / locust not installed
├── ServerFailed                a server under test did not start, or died
├── MeasurementFailed           a load run produced no usable figure
└── ResultsFormatError          a results or baseline file of an older/unknown format
"""

from __future__ import annotations


class BenchError(Exception):
    exit_status = 2


class ToolMissing(BenchError):
    pass


class ServerFailed(BenchError):
    pass


class MeasurementFailed(BenchError):
    pass


class ResultsFormatError(BenchError):
    pass
