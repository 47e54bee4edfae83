"""Export the trained network to ONNX and prove the graph computes the same function.

The graph takes ``features`` (batch, 15) float32 and returns ``score`` (batch,) float32: the
derived inputs, standardisation and calibration are all inside it. Parity: the largest
absolute score difference against PyTorch, on real validation rows and on random rows drawn
across the training range of each feature (and beyond, where fraud lives), must be <= 1e-5.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from model.network import EnsembleLinear, FraudNet
from optimize.backend_protocol import INPUT_NAME, OUTPUT_NAME
from optimize.errors import ExportError

OPSET = 20
FP32_PARITY_LIMIT = 1e-5


class InferenceForm(nn.Module):
    """The same function as ``FraudNet.forward``, laid out for inference engines: each
    member's layers as plain 2-D GEMMs (which ONNX Runtime fuses with bias and ReLU) instead
    of batched 3-D matmuls. Measured with ONNX Runtime on one core (2-core x86 machine):
    batch 1 24.1 -> 20.3 us, batch 4,096 4.26 -> 3.70 ms. Parity is checked on every export."""

    def __init__(self, net: FraudNet) -> None:
        super().__init__()
        self.net = net.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        z = (net.inputs(x) - net.center) / net.scale  # (batch, n_inputs)
        total: torch.Tensor | None = None
        for k in range(net.n_members):
            h = z
            for layer in net.hidden_layers:
                assert isinstance(layer, EnsembleLinear)
                h = net.act(F.linear(h, layer.weight[k].T, layer.bias[k, 0]))
            logit = F.linear(h, net.head.weight[k].T, net.head.bias[k, 0])  # (batch, 1)
            total = logit if total is None else total + logit
        assert total is not None
        mean_logit = (total / net.n_members).squeeze(1)
        return torch.sigmoid(net.calib_slope * mean_logit + net.calib_intercept)


class FusedForm(nn.Module):
    """The same function in fewer, larger graph nodes, for small batches, where each node's
    dispatch costs more than its arithmetic (60 nodes in InferenceForm's graph, 24 here):

    - the derived inputs are one gather, clamp and log1p over all their columns;
    - a log-ratio enters the first layer as its numerator and its denominator, with opposite
      weights (a linear layer distributes over the difference); both are standardised with
      the ratio's scale and the ratio's centre is taken once, so their difference is the
      standardised ratio;
    - the members' first layers are one GEMM, split per member after it;
    - the head, the members' mean and Platt's slope and intercept are one GEMM over the
      members' concatenated last hidden layers.

    Measured with ONNX Runtime on one core of the 2-core build machine: batch 1 20.4 ->
    14.3 us, batch 8 27.1 -> 22.0 us, but batch 512 530 -> 607 us and batch 4,096 4.2 ->
    5.2 ms (the split and the concatenation copy every row). So it is a variant of its own
    (``fused``), and the server's per-batch-size selection uses it where it is faster."""

    columns: torch.Tensor
    center: torch.Tensor
    scale: torch.Tensor
    w_first: torch.Tensor
    b_first: torch.Tensor
    w_head: torch.Tensor
    b_head: torch.Tensor

    def __init__(self, net: FraudNet) -> None:
        super().__init__()
        self.net = net.eval()
        if not net.hidden_layers:
            raise ExportError("the fused form needs at least one hidden layer")
        with torch.no_grad():  # the folded weights are constants of the graph
            self._fold(net)

    def _fold(self, net: FraudNet) -> None:
        ratios = net.n_features + len(net.log_idx)  # the first log-ratio input column
        n_ratios = len(net.num_idx)
        self.register_buffer("columns", torch.cat([net.log_idx, net.num_idx, net.den_idx]))
        self.register_buffer("center", torch.cat([net.center, torch.zeros(n_ratios)]))
        self.register_buffer("scale", torch.cat([net.scale, net.scale[ratios:]]))
        first, *rest = net.hidden_layers
        assert isinstance(first, EnsembleLinear)
        w = torch.cat([first.weight, -first.weight[:, ratios:]], dim=1)  # (members, in, h1)
        self.register_buffer("w_first", torch.cat(list(w), dim=1).T.contiguous())
        self.register_buffer("b_first", first.bias[:, 0, :].reshape(-1))  # (members * h1,)
        self.width = first.weight.shape[2]
        self.n_rest = len(rest)
        for j, layer in enumerate(rest):
            assert isinstance(layer, EnsembleLinear)
            for k in range(net.n_members):  # F.linear's (out, in) layout, one per member
                self.register_buffer(f"w{j}_{k}", layer.weight[k].T.contiguous())
                self.register_buffer(f"b{j}_{k}", layer.bias[k, 0].clone())
        slope, head = net.calib_slope, net.head
        self.register_buffer("w_head", head.weight[:, :, 0].reshape(1, -1) * slope / net.n_members)
        self.register_buffer("b_head", (slope * head.bias.mean() + net.calib_intercept).reshape(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        derived = torch.log1p(torch.clamp(x.index_select(1, self.columns), min=0.0))
        z = (torch.cat([x, derived], dim=1) - self.center) / self.scale
        parts = net.act(F.linear(z, self.w_first, self.b_first)).split(self.width, dim=1)
        for layer in self.later_layers():
            parts = tuple(
                net.act(F.linear(h, w, b)) for h, (w, b) in zip(parts, layer, strict=True)
            )
        return torch.sigmoid(F.linear(torch.cat(parts, dim=1), self.w_head, self.b_head)).squeeze(1)

    def kernel_arrays(self) -> dict[str, np.ndarray]:
        """The weights in the C kernel's layout (optimize/kernel/fused_row.c: input dimension
        first), for the package's ``model.fused_row.npz``: the server binds them without
        PyTorch."""
        net = self.net

        def f32(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)

        later = self.later_layers()
        out: dict[str, np.ndarray] = {
            "shape": np.array(
                [net.n_features, net.n_members, self.width, self.n_rest, net.activation == "silu"],
                dtype=np.int32,
            ),
            "columns": self.columns.numpy().astype(np.int32),
            "center": f32(self.center),
            "scale": f32(self.scale),
            "w_first": f32(self.w_first.T),  # (in, members * width)
            "b_first": f32(self.b_first),
            "rest_width": np.array([layer[0][0].shape[0] for layer in later] or [0], np.int32),
            "w_head": f32(self.w_head.reshape(-1)),
            "b_head": f32(self.b_head.reshape(1)),
        }
        for j, layer in enumerate(later):
            for k, (w, b) in enumerate(layer):
                out[f"w_rest_{j}_{k}"] = f32(w.T)  # (in, out)
                out[f"b_rest_{j}_{k}"] = f32(b)
        return out

    def later_layers(self) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """The hidden layers after the first: per layer, per member, (weight (out, in), bias)."""
        return [
            [
                (self.get_buffer(f"w{j}_{k}"), self.get_buffer(f"b{j}_{k}"))
                for k in range(self.net.n_members)
            ]
            for j in range(self.n_rest)
        ]


def export_onnx(model: FraudNet, path: Path, form: type[nn.Module] = InferenceForm) -> None:
    """Write ``form(model)`` to ``path`` as ONNX (batch dimension dynamic) and check the file."""
    model.eval()
    example = torch.rand(8, model.n_features)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    try:
        # the exporter reports progress on stdout; keep the command's output to its result
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # it also logs that torchvision's ops are skipped: irrelevant to this network
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            program = torch.onnx.export(
                form(model),
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"x": {0: batch}},
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
        if program is None:
            raise ExportError("torch.onnx.export returned no program")
        program.save(str(path))
        onnx.checker.check_model(str(path), full_check=True)
    except ExportError:
        raise
    except Exception as exc:  # torch.export raises many types
        raise ExportError(f"ONNX export of FraudNet ({form.__name__}) failed: {exc}") from exc


def random_rows(ranges: list[tuple[float, float]], n: int, seed: int = 0) -> np.ndarray:
    """Rows across (and 2x beyond) each feature's training range: (n, n_features) float32."""
    rng = np.random.default_rng(seed)
    lo = np.array([a for a, _ in ranges])
    hi = np.array([b for _, b in ranges])
    span = np.maximum(hi - lo, 1.0)
    x = rng.uniform(lo, hi + span, size=(n, len(ranges)))
    return x.astype(np.float32)


def torch_scores(model: FraudNet, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy().astype(np.float32)


def onnx_scores(path: Path, x: np.ndarray) -> np.ndarray:
    """Scores of an ONNX file on the CPU provider, in chunks: (rows,) float32."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for a bad graph
        raise ExportError(f"onnxruntime cannot load {path.name}: {exc}") from exc
    chunks = [
        session.run(None, {INPUT_NAME: x[i : i + 65_536]})[0] for i in range(0, len(x), 65_536)
    ]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def check_parity(
    model: FraudNet,
    path: Path,
    real_x: np.ndarray,
    ranges: list[tuple[float, float]],
    n_random: int = 4_096,
) -> dict[str, float]:
    """Max |ONNX - PyTorch| on real and random rows; raise ExportError past the limit."""
    rand = random_rows(ranges, n_random)
    report = {"real_rows": len(real_x), "random_rows": n_random, "limit": FP32_PARITY_LIMIT}
    for name, x in (("real", real_x), ("random", rand)):
        diff = np.abs(torch_scores(model, x) - onnx_scores(path, x))
        report[f"{name}_max_abs_diff"] = float(diff.max()) if len(diff) else 0.0
    worst = max(report["real_max_abs_diff"], report["random_max_abs_diff"])
    if worst > FP32_PARITY_LIMIT:
        raise ExportError(
            f"{path.name} differs from PyTorch by {worst:.3g} (limit {FP32_PARITY_LIMIT})"
        )
    return report
