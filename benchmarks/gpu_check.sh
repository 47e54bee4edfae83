#!/usr/bin/env bash
# The GPU check, in one call on a CUDA machine, under 4 minutes; every result is a file
# under $OUT (default benchmarks/results/gpu-check): gpu-check.log (all output, the targets
# at the end), gpu-table-<stamp>.json, gpu-http-<stamp>.json, server-{gpu,cpu}.log.
#
#   1. the GPU tests (pytest -m gpu; the torch.compile test only with GPU_CHECK_COMPILE=1)
#   2. the backend table (benchmarks.gpu_table; --compile with GPU_CHECK_COMPILE=1)
#   3. if time is left and the web stack imports: HTTP, GPU server against CPU server
#
# The GPU machine has torch, numpy, onnx and onnxruntime but no uvicorn/httptools and no
# package index. Prepare here, where pip reaches PyPI, once per checkout:
#     benchmarks/gpu_check.sh fetch-wheels     # -> .whl/ (ignored through .git/info/exclude)
# then run there with the package and the wheels carried:
#     carry: [".whl", "artifacts/package"]   command: bash benchmarks/gpu_check.sh
# Without .whl the HTTP step is skipped with the reason.
set -u -o pipefail
cd "$(dirname "$0")/.." || exit
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
PACKAGE=${PACKAGE:-artifacts/package}
OUT=${OUT:-benchmarks/results/gpu-check}
BUDGET_S=${GPU_CHECK_BUDGET_S:-230}
COMPILE=${GPU_CHECK_COMPILE:-0}

if [ "${1:-}" = fetch-wheels ]; then
    # what the server imports beyond the device's torch, numpy, onnx and onnxruntime
    pins=$(grep -E '^(uvicorn|httptools|uvloop|prometheus_client|click|h11)==' requirements/dev.lock \
        | tr '\n' ' ')
    mkdir -p "$WHEELS"
    grep -qxF "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >>.git/info/exclude
    # shellcheck disable=SC2086  # one argument per pin
    exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELS" $pins
fi

mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
deadline=$((SECONDS + BUDGET_S))
left() { echo $((deadline - SECONDS)); }
cap() { # seconds for a step: what is left, at most $1, at least 1 (timeout 0 would mean none)
    local l=$((deadline - SECONDS))
    [ "$l" -gt "$1" ] && l=$1
    [ "$l" -lt 1 ] && l=1
    echo "$l"
}

export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu-check-site "$WHEELS"/*.whl &&
        export PYTHONPATH="$PYTHONPATH:/tmp/gpu-check-site"
fi

echo "== machine"
nvidia-smi -L || true
"$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__,
    "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")'

echo "== 1. GPU tests ($(left) s left)"
select_compile=(-k "not compiled")
[ "$COMPILE" = 1 ] && select_compile=()
# -W default: a library warning is printed, not turned into a failure of the device run
timeout "$(cap 100)" "$PY" -m pytest -q -m gpu -W default \
    "${select_compile[@]}" tests/test_torch_cuda.py
echo "pytest exit: $?"

echo "== 2. backend table ($(left) s left)"
table_args=(--package "$PACKAGE" --out-dir "$OUT" --budget-s 0.2)
[ "$COMPILE" = 1 ] && table_args+=(--compile)
if [ ! -f "$PACKAGE/manifest.json" ]; then
    echo "table skipped: no package at $PACKAGE (carry artifacts/package)"
else
    timeout "$(cap 120)" "$PY" -m benchmarks.gpu_table "${table_args[@]}"
    echo "table exit: $?"
fi

echo "== 3. HTTP, GPU server against CPU server ($(left) s left)"
if ! "$PY" -c 'import serving.entrypoint, serving.app, uvicorn, httptools, uvloop' 2>/dev/null; then
    echo "HTTP skipped: the web stack does not import (run benchmarks/gpu_check.sh fetch-wheels" \
        "here and carry .whl)"
elif [ ! -f "$PACKAGE/manifest.json" ]; then
    echo "HTTP skipped: no package at $PACKAGE"
elif [ "$(left)" -lt 70 ]; then
    echo "HTTP skipped: $(left) s left, it needs about 70"
else
    timeout "$(cap 200)" "$PY" -m benchmarks.gpu_http --package "$PACKAGE" \
        --out-dir "$OUT" --seconds 2
    echo "http exit: $?"
fi

echo "== targets"
"$PY" - "$OUT" <<'EOF'
import glob, json, sys
for pattern in ("gpu-table-*.json", "gpu-http-*.json"):
    for path in sorted(glob.glob(f"{sys.argv[1]}/{pattern}"))[-1:]:
        result = json.load(open(path))
        print(path, json.dumps(result.get("targets", result.get("target")), indent=1))
EOF
echo "done in $SECONDS s"
