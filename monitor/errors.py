"""Errors of the monitor.

    FraudError (core.errors)
    └── MonitorError             a run cannot produce its reports
        ├── ConfigError          an environment variable or option is missing or malformed
        ├── BaselineError        statistics.json / constraints.json missing or malformed
        ├── SourceError          the capture or label source cannot be listed or read
        └── PublishError         CloudWatch refused the metrics

A capture record that does not parse is not an error of the run: it is counted in the
report (``unreadable_records``) with the first reason, and the run goes on.
"""

from __future__ import annotations

from core.errors import FraudError


class MonitorError(FraudError):
    http_status = 500


class ConfigError(MonitorError):
    http_status = 400


class BaselineError(MonitorError):
    http_status = 400


class SourceError(MonitorError):
    http_status = 502


class PublishError(MonitorError):
    http_status = 502
