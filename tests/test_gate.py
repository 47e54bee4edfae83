"""The performance gate: its judgement on given figures, and a real slowdown it must see."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks import gate, servers, wrk
from benchmarks.errors import ResultsFormatError, ServerFailed, ToolMissing

BASELINE_FILE = Path(__file__).parents[1] / "benchmarks" / "baseline.json"


def _baseline(tolerance: float = 0.5) -> dict[str, Any]:
    values = {
        "http_p50_over_floor": 2.5,  # lower is better
        "http_rps_over_naive": 4.0,
        "backend_speedup_b1": 5.0,
        "backend_speedup_b512": 2.0,
        "ap_over_xgboost": 1.006,
    }
    return {
        "format": gate.FORMAT,
        "ratios": {k: {"value": v, "tolerance": tolerance} for k, v in values.items()},
    }


def _figures(**changes: float) -> dict[str, float]:
    figures = {k: v["value"] for k, v in _baseline()["ratios"].items()}
    figures.update(changes)
    return figures


def _statuses(verdicts: list[gate.Verdict]) -> dict[str, str]:
    return {v.name: v.status for v in verdicts}


def test_equal_figures_pass() -> None:
    verdicts = gate.judge(_baseline(), {k: [v] for k, v in _figures().items()})
    assert set(_statuses(verdicts).values()) == {"ok"}


def test_worse_beyond_tolerance_fails_in_the_ratios_own_direction() -> None:
    worse = _figures(http_p50_over_floor=3.1, http_rps_over_naive=3.4)
    verdicts = _statuses(gate.judge(_baseline(), {k: [v] for k, v in worse.items()}))
    assert verdicts["http_p50_over_floor"] == "regressed"  # higher, and lower is better
    assert verdicts["http_rps_over_naive"] == "regressed"  # lower, and higher is better
    assert verdicts["backend_speedup_b1"] == "ok"


def test_worse_within_tolerance_and_better_figures_pass() -> None:
    figures = _figures(http_p50_over_floor=2.9, http_rps_over_naive=9.0, backend_speedup_b1=4.6)
    verdicts = gate.judge(_baseline(), {k: [v] for k, v in figures.items()})
    assert set(_statuses(verdicts).values()) == {"ok"}


def test_a_ratio_not_measured_fails_closed() -> None:
    figures = {k: [v] for k, v in _figures().items()}
    del figures["backend_speedup_b512"]
    figures["ap_over_xgboost"] = [float("nan")]
    verdicts = _statuses(gate.judge(_baseline(), figures))
    assert verdicts["backend_speedup_b512"] == "missing"
    assert verdicts["ap_over_xgboost"] == "missing"


def test_one_noisy_run_is_measured_again_and_passes() -> None:
    runs = iter([_figures(http_p50_over_floor=9.0), _figures(), _figures(http_p50_over_floor=2.6)])
    calls = []

    def measure() -> dict[str, float]:
        calls.append(1)
        return next(runs)

    verdicts = gate.gate(_baseline(), measure, retries=2)
    assert len(calls) == 3  # median of (9.0, 2.5) still fails; of (9.0, 2.5, 2.6) it passes
    assert set(_statuses(verdicts).values()) == {"ok"}


def test_a_lasting_regression_fails_after_the_retries() -> None:
    calls = []

    def measure() -> dict[str, float]:
        calls.append(1)
        return _figures(backend_speedup_b1=3.0)

    verdicts = gate.gate(_baseline(), measure, retries=2)
    assert len(calls) == 3
    assert _statuses(verdicts)["backend_speedup_b1"] == "regressed"


def test_calibration_takes_the_tolerance_from_the_spread_with_a_floor() -> None:
    runs = [_figures(http_p50_over_floor=v) for v in (2.0, 2.2, 2.4, 2.6, 2.8)]
    baseline = gate.calibrate(runs)
    entry = baseline["ratios"]["http_p50_over_floor"]
    assert entry["value"] == pytest.approx(2.4)
    assert entry["tolerance"] == pytest.approx(gate.SPREAD_K * 1.4826 * 0.2)
    steady = baseline["ratios"]["backend_speedup_b1"]  # no spread: the floor applies
    assert steady["tolerance"] == pytest.approx(0.15 * 5.0)
    gate.judge(baseline, {k: [v] for k, v in _figures().items()})  # it loads as a baseline


def test_baseline_of_another_format_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    with pytest.raises(ResultsFormatError, match="no baseline"):
        gate.load_baseline(path)
    path.write_text(json.dumps({"format": 1, "ratios": {}}))
    with pytest.raises(ResultsFormatError, match="format 1.*reads format 2"):
        gate.load_baseline(path)
    path.write_text(json.dumps({"format": gate.FORMAT, "calibrations": {}}))
    with pytest.raises(ResultsFormatError, match="no calibration"):
        gate.load_baseline(path)
    entry = {"ratios": {k: v for k, v in _baseline()["ratios"].items() if k != "ap_over_xgboost"}}
    path.write_text(json.dumps({"format": gate.FORMAT, "calibrations": {"cpu A": entry}}))
    with pytest.raises(ResultsFormatError, match="'cpu A' lacks .* 'ap_over_xgboost'"):
        gate.load_baseline(path)


def test_a_baseline_holding_nan_is_refused_instead_of_passing_everything(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    ratios = _baseline()["ratios"]
    ratios["http_p50_over_floor"] = {"value": float("nan"), "tolerance": 0.5}
    path.write_text(
        json.dumps({"format": gate.FORMAT, "calibrations": {"cpu A": {"ratios": ratios}}})
    )
    with pytest.raises(ResultsFormatError, match="expected finite numbers"):
        gate.load_baseline(path, cpu="cpu A")


def test_a_cpu_without_its_own_calibration_gets_wider_tolerances(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    gate.save_calibration(path, {"ratios": _baseline(tolerance=0.01)["ratios"]}, cpu="cpu A")
    own = gate.load_baseline(path, cpu="cpu A")
    other = gate.load_baseline(path, cpu="cpu B")
    assert own["source"] == "calibrated on cpu A"
    assert own["ratios"]["backend_speedup_b1"]["tolerance"] == 0.01
    assert "no calibration for cpu B" in other["source"]
    widened = other["ratios"]["backend_speedup_b1"]["tolerance"]
    assert widened == pytest.approx(gate.PORTABLE_REL["backend_speedup_b1"] * 5.0)
    gate.save_calibration(path, {"ratios": _baseline()["ratios"]}, cpu="cpu B")  # adds, keeps A
    assert gate.load_baseline(path, cpu="cpu A")["source"] == "calibrated on cpu A"
    assert gate.load_baseline(path, cpu="cpu B")["source"] == "calibrated on cpu B"


def test_the_committed_baseline_loads() -> None:
    baseline = gate.load_baseline(BASELINE_FILE)
    assert set(baseline["ratios"]) == set(gate.BY_NAME)


def test_missing_wrk_fails_the_gate_closed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no wrk on it
    with pytest.raises(ToolMissing, match="wrk is not installed"):
        wrk.require()
    assert gate.main(["--baseline", str(BASELINE_FILE)]) == 2
    assert "FAILED (nothing was judged)" in capsys.readouterr().err


def test_a_server_that_refuses_its_package_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ServerFailed, match="will not become healthy: /ping 503"):
        with servers.running("ours", tmp_path / "no-such-package", start_timeout_s=60):
            pass


needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None and not os.environ.get("CI"),
    reason="wrk not installed (make test installs it; in CI its absence fails)",
)


@needs_wrk
def test_an_injected_slowdown_moves_the_ratio_past_its_tolerance(small_package: Path) -> None:
    tolerance = gate.load_baseline(BASELINE_FILE)["ratios"]["http_p50_over_floor"]["tolerance"]
    normal = gate.measure_http(small_package, seconds=1)["http_p50_over_floor"]
    slowed = gate.measure_http(small_package, seconds=1, slow_us=1_000)["http_p50_over_floor"]
    # 1 ms of extra work per request on a ~0.2 ms request: the ratio must leave the band
    assert slowed - normal > tolerance
