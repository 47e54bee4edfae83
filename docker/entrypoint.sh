#!/bin/sh
# The entrypoint of both images (Dockerfile, Dockerfile.gpu).
#
# SageMaker starts a bring-your-own container as `docker run IMAGE serve` (endpoints, batch
# transform) or `docker run IMAGE train` (training jobs): the word arrives as the first
# argument; `monitor` runs the drift and quality monitor (Processing jobs and Model Monitor
# set ContainerEntrypoint ["monitor"] and reach the console script without this script).
# This script execs the console script of that name (pyproject.toml's `serve`, `train` and
# `monitor`) with the remaining arguments, so that process takes over this one's PID (1 in the
# container) and receives SageMaker's SIGTERM itself; both install their own handler, which
# PID 1 needs because the kernel gives it no default one. Any other word: usage, exit 2.
#
# GPU image only: a SageMaker GPU host may run an NVIDIA driver older than the image's CUDA
# (ml.g4dn and ml.p3 have defaulted to driver 470, CUDA 11.4), and NVIDIA Container Toolkit
# 1.17.4 and later no longer mounts the image's CUDA forward-compatibility libraries by
# itself. As AWS recommends for such containers, /usr/local/cuda/compat goes first on
# LD_LIBRARY_PATH only while the host driver is older than the driver those libraries stand
# in for, so a later driver upgrade on the host turns them off without a new image. The CPU
# image has no compat directory and skips this. (FRAUD_CUDA_COMPAT_DIR and
# FRAUD_NVIDIA_VERSION_FILE exist for the tests, which run this script outside a container.)
set -eu

compat_dir=${FRAUD_CUDA_COMPAT_DIR:-/usr/local/cuda/compat}
driver_version_file=${FRAUD_NVIDIA_VERSION_FILE:-/proc/driver/nvidia/version}

usage() {
    echo "usage: IMAGE serve|train|monitor [ARG...]"
    echo "  serve    run the model server (SageMaker endpoints and batch transform)"
    echo "  train    run a training job (SageMaker training)"
    echo "  monitor  compare captured traffic with the baseline (SageMaker Processing)"
}

# true when dotted version $1 sorts strictly before $2 (470.256.02 < 560.35.05)
version_lt() {
    [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]
}

enable_cuda_compat() {
    [ -e "$compat_dir/libcuda.so.1" ] || return 0
    # libcuda.so.1 -> libcuda.so.560.35.05: the newest driver these libraries stand in for
    target=$(readlink "$compat_dir/libcuda.so.1") || return 0
    target=${target##*/}
    compat_version=${target#libcuda.so.}
    # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.256.02  Thu Jan  4 ..." (the open
    # kernel module words it differently): the first dotted number on that line
    driver_version=$(awk '/^NVRM version:/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+(\.[0-9]+)?$/) { print $i; exit }
    }' "$driver_version_file" 2>/dev/null || true)
    if [ -n "$driver_version" ] && version_lt "$driver_version" "$compat_version"; then
        echo "entrypoint: host NVIDIA driver $driver_version is older than $compat_version;" \
            "using the CUDA compatibility libraries in $compat_dir" >&2
        LD_LIBRARY_PATH="$compat_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export LD_LIBRARY_PATH
    fi
}

case "${1:-}" in
    serve | train | monitor)
        command=$1
        shift
        enable_cuda_compat
        exec "$command" "$@"
        ;;
    *)
        if [ -n "${1:-}" ]; then
            echo "entrypoint: unknown command '$1'" >&2
        fi
        usage >&2
        exit 2
        ;;
esac
