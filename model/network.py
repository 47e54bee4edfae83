"""The fraud network definition. Imports nothing but torch: the server loads weights into it.

``FraudNet`` takes the 15 raw features (batch, 15) float32 and returns calibrated fraud
probabilities (batch,). Everything between raw features and probability lives in the module,
so an exported graph is self-contained:

1. derived inputs: log1p of non-negative amounts and counts, and log-ratios of the amount to
   the customer's mean amounts (scenario-3 fraud multiplies a card's amounts);
2. standardisation with training-period statistics (buffers ``center`` and ``scale``);
3. an ensemble of MLPs (ReLU or SiLU) computed as one batched MLP (weights (members, in,
   out), one bmm per layer for all members; members share the input, their logits are
   averaged);
4. Platt calibration of the averaged logit (buffers ``calib_slope``, ``calib_intercept``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

ACTIVATIONS = {"relu": torch.relu, "silu": nn.functional.silu}


class FraudNet(nn.Module):
    log_idx: torch.Tensor
    num_idx: torch.Tensor
    den_idx: torch.Tensor
    center: torch.Tensor
    scale: torch.Tensor
    calib_slope: torch.Tensor
    calib_intercept: torch.Tensor

    def __init__(
        self,
        n_features: int,
        log_columns: list[int],
        ratio_pairs: list[tuple[int, int]],
        hidden: list[int],
        dropout: float = 0.0,
        n_members: int = 1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        self.n_features = n_features
        self.activation = activation
        self.act = ACTIVATIONS[activation]
        self.register_buffer("log_idx", torch.tensor(log_columns, dtype=torch.long))
        self.register_buffer("num_idx", torch.tensor([a for a, _ in ratio_pairs], dtype=torch.long))
        self.register_buffer("den_idx", torch.tensor([b for _, b in ratio_pairs], dtype=torch.long))
        n_inputs = n_features + len(log_columns) + len(ratio_pairs)
        self.register_buffer("center", torch.zeros(n_inputs))
        self.register_buffer("scale", torch.ones(n_inputs))
        self.register_buffer("calib_slope", torch.tensor(1.0))
        self.register_buffer("calib_intercept", torch.tensor(0.0))
        self.n_members = n_members
        widths = [n_inputs, *hidden]
        self.hidden_layers = nn.ModuleList(
            [EnsembleLinear(n_members, a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.head = EnsembleLinear(n_members, widths[-1], 1)
        self.dropout = nn.Dropout(dropout)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Raw features (batch, n_features) -> unstandardised model inputs (batch, n_inputs)."""
        logs = torch.log1p(torch.clamp(x[:, self.log_idx], min=0.0))
        num = torch.log1p(torch.clamp(x[:, self.num_idx], min=0.0))
        den = torch.log1p(torch.clamp(x[:, self.den_idx], min=0.0))
        return torch.cat([x, logs, num - den], dim=1)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logit of every member (members, batch)."""
        z = (self.inputs(x) - self.center) / self.scale
        h = z.unsqueeze(0).expand(self.n_members, -1, -1)  # (members, batch, n_inputs)
        for layer in self.hidden_layers:
            h = self.dropout(self.act(layer(h)))
        return self.head(h).squeeze(2)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Uncalibrated ensemble logit (batch,): the mean of the members' logits."""
        return self.member_logits(x).mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.calib_slope * self.logits(x) + self.calib_intercept)


class EnsembleLinear(nn.Module):
    """``n_members`` independent linear layers applied in one batched matmul."""

    def __init__(self, n_members: int, n_in: int, n_out: int) -> None:
        super().__init__()
        bound = 1.0 / n_in**0.5  # nn.Linear's default init range
        self.weight = nn.Parameter(torch.empty(n_members, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_members, 1, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (members, batch, n_in) -> (members, batch, n_out)
        return torch.baddbmm(self.bias, x, self.weight)


def from_description(network: Mapping[str, Any], weights: Path | None = None) -> FraudNet:
    """The network a package or model directory describes (its ``network`` config, as JSON
    gives it back), with ``weights`` (a state dict, loaded weights_only) when given, in eval
    mode on the CPU. Raises what torch raises on weights that do not fit."""
    cfg = dict(network)
    cfg["ratio_pairs"] = [tuple(p) for p in cfg["ratio_pairs"]]  # JSON made them lists
    net = FraudNet(**cfg)
    if weights is not None:
        net.load_state_dict(torch.load(weights, weights_only=True, map_location="cpu"))
    return net.eval()


def load_network(weights: Path, network: dict[str, Any], dtype: str = "fp32") -> Any:
    """FraudNet on the CPU in eval mode from the packaged weights and definition; for a low
    precision ``dtype`` its MLP layers are cast, with casts at their edges."""
    net = from_description(network, weights)
    if dtype != "fp32":
        low = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        net.hidden_layers.to(low)
        net.head.to(low)
        net.hidden_layers[0].register_forward_pre_hook(_cast_input(low))
        net.head.register_forward_hook(_float32_output)
    return net


def _cast_input(dtype: Any) -> Callable[[Any, tuple[Any, ...]], tuple[Any, ...]]:
    def hook(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0].to(dtype),)  # standardised inputs (members, batch, n_inputs)

    return hook


def _float32_output(module: Any, args: tuple[Any, ...], output: Any) -> Any:
    return output.float()  # member logits (members, batch, 1): mean and sigmoid in float32
