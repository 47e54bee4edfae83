# syntax=docker/dockerfile:1
# CPU images of the fraud-scoring service: SageMaker bring-your-own containers. Two targets:
#
#   docker build -t fraud-inference:cpu .                      # serving (the last stage)
#   docker build --target train -t fraud-inference:train .     # training jobs
#
# The serving image (ml.c6i, ml.c5 endpoints, batch transform: `docker run IMAGE serve`)
# carries requirements/runtime.lock only: no PyTorch, no build or test tools, so it pulls and
# starts fast when an endpoint scales out. The training image (`docker run IMAGE train`) adds
# requirements/build.lock and the training code. docker/entrypoint.sh dispatches the word to
# the console script of that name. No model is baked in: SageMaker mounts it at
# /opt/ml/model (and the training inputs and outputs under /opt/ml).
#
# The GPU image (Dockerfile.gpu) follows the same layout; keep the two in step.
# The batch-1 C kernel (optimize/kernel/fused_row.c) is compiled in a stage of its own, so
# the image carries no compiler: the full Python image of the same Debian release has gcc.
FROM python:3.11-bookworm AS kernel
WORKDIR /build
COPY optimize/kernel/fused_row.c ./
RUN gcc -O3 -fPIC -shared -o libfusedrow.so fused_row.c -lm

FROM python:3.11-slim-bookworm AS runtime

# the server listens on SAGEMAKER_BIND_TO_PORT when SageMaker sets it (8080 otherwise)
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /opt/program

# The venv gets a RUN of its own: sh remembers where it first found `python`, so in the RUN
# that creates /opt/venv a bare `python` would go on meaning the system one.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir pip==26.3

# Dependencies first and from the runtime lock alone, so this layer is rebuilt only when the
# lock changes. No apt packages are needed: every native library the wheels load beyond
# glibc, libstdc++ and zlib is vendored in the wheels.
COPY requirements/runtime.lock requirements/
RUN pip install --no-cache-dir -r requirements/runtime.lock

# What the server imports, without dependencies (the lock brought them). Folder by folder,
# so the build context's .venv/ and artifacts/ (where a trained model may sit) never reach
# the image; benchmarks/ and the test suite stay out.
COPY pyproject.toml README.md ./
COPY core/ core/
COPY optimize/ optimize/
COPY serving/ serving/
# package data (pyproject.toml): the install puts it beside optimize/fused_row.py
COPY --from=kernel /build/libfusedrow.so optimize/kernel/
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info

COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/sagemaker-entrypoint

# Root, on purpose. SageMaker runs the container as the image's user and mounts /opt/ml
# (model, input, output, checkpoints) from the host as root-owned directories; `train` must
# write the model, checkpoints and failure file there, and SageMaker offers no setting to
# change the user or those mounts' owner. A non-root user would break training jobs, and the
# two images share this stage. (0 rather than "root": a numeric id needs no passwd lookup.)
# hadolint ignore=DL3002
USER 0

EXPOSE 8080

ENTRYPOINT ["/usr/local/bin/sagemaker-entrypoint"]

# The training image: the build stack on top of the runtime, then the training code.
# torch: the build lock pins torch==2.13.0, and PyPI's build of that version is the CUDA one,
# which pulls gigabytes of nvidia-* wheels a CPU host never uses. PyTorch's CPU index serves
# 2.13.0+cpu: it satisfies ==2.13.0 (a local label is ignored by ==) and sorts above the
# plain 2.13.0, so pip takes it; the check after the install fails the build if it did not.
FROM runtime AS train
COPY requirements/build.lock requirements/
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        -r requirements/build.lock \
    && python -c "import torch; assert torch.version.cuda is None, torch.__version__"
COPY cli/ cli/
COPY model/ model/
COPY deploy/ deploy/
COPY monitor/ monitor/
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info

# The serving image, the default target: the runtime stage as it is.
FROM runtime AS serve
