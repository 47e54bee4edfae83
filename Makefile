# Set-up is idempotent: `make install` builds .venv from requirements/dev.lock (everything:
# runtime, build and dev tools) once and again only when the lock or pyproject.toml changes.
# `make serve` and `make test` call it. The CPU image installs requirements/runtime.lock only.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNEL := optimize/kernel/libfusedrow.so
ARTIFACTS ?= artifacts
FRAUD := $(VENV)/bin/fraud --artifacts $(ARTIFACTS)

.PHONY: install test lint lint-cfn typecheck tools pytest serve demo-model data train evaluate \
	bench bench-backends bench-http bench-gate bench-startup loadtest fuzz soak bench-faults \
	lock lock-dev \
	lock-build lock-runtime clean monitor-demo bench-monitor

install: $(STAMP) $(KERNEL)

# the batch-1 C kernel (optimize/fused_row.py); without a compiler the server uses ONNX Runtime
$(KERNEL): optimize/kernel/fused_row.c
	rm -f $@  # a failed build must not leave an older library (and struct layout) behind
	$(CC) -O3 -fPIC -shared -o $@ $< -lm || echo "no C compiler: the c-cpu backend stays off"

$(STAMP): requirements/dev.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(VENV)/bin/pytest -q

test: lint typecheck lint-cfn tools pytest

# system tools the tests and benchmarks drive (Debian packages; CI runs as root)
tools:
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)

# CloudFormation: cfn-lint (ours), checkov in its own venv (its pins clash with ours) with the
# custom rule CKV_FRAUD_1 (deploy/checks): endpoint volume and data-capture encryption
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CFN_TEMPLATES := deploy/templates/regional.yaml deploy/templates/global.yaml \
	deploy/templates/monitoring.yaml

$(CHECKOV_STAMP): deploy/requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r deploy/requirements-checkov.txt
	touch $(CHECKOV_STAMP)

lint-cfn: install $(CHECKOV_STAMP)
	$(VENV)/bin/cfn-lint $(CFN_TEMPLATES)
	PYTHONPATH=$(CURDIR) $(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download \
	  --framework cloudformation --external-checks-dir deploy/checks/external \
	  $(addprefix -f ,$(CFN_TEMPLATES))

# the demo model: simulated data, then training, each only when missing
$(ARTIFACTS)/data/transactions.parquet: | $(STAMP)
	$(FRAUD) data

$(ARTIFACTS)/model/model.json: | $(ARTIFACTS)/data/transactions.parquet
	$(FRAUD) train

$(ARTIFACTS)/package/manifest.json: | $(ARTIFACTS)/model/model.json
	$(FRAUD) export
	$(FRAUD) optimize

demo-model: $(ARTIFACTS)/package/manifest.json

data: install
	$(FRAUD) data

train: install
	$(FRAUD) train

evaluate: install demo-model
	$(FRAUD) evaluate

# one worker: the default embedded feature store serves one process (serving/feature_store)
serve: demo-model
	FRAUD_STORE_PATH=$${FRAUD_STORE_PATH:-$(ARTIFACTS)/feature-store/embedded.pickle} $(FRAUD) serve --workers 1

# the test-week evaluation the benchmarks read (single split; `make evaluate` adds the folds)
$(ARTIFACTS)/evaluation/evaluation.json: | $(ARTIFACTS)/model/model.json
	$(FRAUD) evaluate --folds 0 --quiet

# every benchmark, one results file (benchmarks/results/<timestamp>.json), plots, RESULTS.md
bench: demo-model $(ARTIFACTS)/evaluation/evaluation.json tools
	$(PY) -m benchmarks.suite --package $(ARTIFACTS)/package \
	  --evaluation $(ARTIFACTS)/evaluation/evaluation.json

# only the backend table, or only the HTTP comparison
bench-backends: demo-model
	$(PY) -m benchmarks.backend_table --package $(ARTIFACTS)/package

bench-http: demo-model tools
	$(PY) -m benchmarks.http_bench --package $(ARTIFACTS)/package

# Locust: ramp, plateau below capacity, spike above it; exits 1 when the verdict fails
loadtest: demo-model
	$(PY) -m benchmarks.loadtest --package $(ARTIFACTS)/package

# a new instance's start: seconds to a healthy /ping, RSS, import time, runtime venv size
bench-startup: demo-model
	$(PY) -m benchmarks.startup --package $(ARTIFACTS)/package --runtime-venv

# 30 minutes at 70 % of the measured capacity, 2 % malformed: errors, RSS growth, p99 drift
soak: demo-model tools
	$(PY) -m benchmarks.faults soak --package $(ARTIFACTS)/package

# a worker killed under load (lost requests, replacement, nothing answered missing from the
# decision log or capture), then an overload spike at 3x capacity (fast 503s, recovery)
bench-faults: demo-model tools
	$(PY) -m benchmarks.faults kill --package $(ARTIFACTS)/package
	$(PY) -m benchmarks.faults overload --package $(ARTIFACTS)/package

# the HTTP contract fuzzed at length: schemathesis on the demo package, every phase including
# the stateful one; exits 1 on any failure, or when fewer than 20,000 cases ran
fuzz: demo-model
	$(PY) -m benchmarks.contract_fuzz --package $(ARTIFACTS)/package

# the regression gate CI runs: key ratios against benchmarks/baseline.json
bench-gate: demo-model $(ARTIFACTS)/evaluation/evaluation.json tools
	$(PY) -m benchmarks.gate --package $(ARTIFACTS)/package \
	  --evaluation $(ARTIFACTS)/evaluation/evaluation.json

# a normal and a drifted week served with capture on, the monitor on each (exit 1 unless the
# drifted week alone alarms on the moved features and on quality)
monitor-demo: demo-model
	$(PY) -m benchmarks.monitor_demo --package $(ARTIFACTS)/package \
	  --data $(ARTIFACTS)/data/transactions.parquet --out $(ARTIFACTS)/monitor-demo

# the monitor's reading speed on one hour of single-record capture
bench-monitor: install
	$(PY) -m benchmarks.monitor_throughput

# The three locks, each a pip freeze of a scratch venv built from pyproject.toml: dev (every
# extra; resolved freely), then build and runtime resolved under dev's pins, so a package has
# one version in all three. `make lock` writes all three; each target writes one.
define freeze_lock
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip setuptools
	.venv-lock/bin/pip install --quiet $(2) -e '.$(3)'
	{ echo '# exact versions for $(1); regenerate with make lock-$(1) (pip freeze of a venv'; \
	  echo '# built from pyproject.toml$(if $(2), under requirements/dev.lock))'; \
	  .venv-lock/bin/pip freeze --all --exclude-editable | grep -v -E '^(pip|-e )' \
	  | sed 's/^torch==\(.*\)+cpu/torch==\1/' | sort -f; } > requirements/$(1).lock
	rm -rf .venv-lock
endef

lock: lock-dev lock-build lock-runtime

lock-dev:
	$(call freeze_lock,dev,,[build,dev])

lock-build:
	$(call freeze_lock,build,-c requirements/dev.lock,[build])

lock-runtime:
	$(call freeze_lock,runtime,-c requirements/dev.lock,)

clean:
	rm -rf $(ARTIFACTS) $(KERNEL)
