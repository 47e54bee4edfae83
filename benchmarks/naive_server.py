"""The naive baseline a tutorial gives: FastAPI + pydantic + PyTorch eager, each request
scored alone in the handler. Same model weights (the package's model.pt), same features."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from fastapi import FastAPI
from pydantic import BaseModel

from model.network import FraudNet


class Request(BaseModel):
    instances: list[list[float]]


def create_app() -> FastAPI:
    package = Path(os.environ.get("FRAUD_MODEL_DIR", "artifacts/package"))
    manifest = json.loads((package / "manifest.json").read_text())
    cfg = dict(manifest["network"])
    cfg["ratio_pairs"] = [tuple(p) for p in cfg["ratio_pairs"]]
    model = FraudNet(**cfg)
    model.load_state_dict(torch.load(package / "model.pt", weights_only=True))
    model.eval()
    torch.set_num_threads(1)
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/invocations")
    def invocations(request: Request) -> dict[str, list[float]]:
        with torch.no_grad():
            scores = model(torch.tensor(request.instances, dtype=torch.float32))
        return {"predictions": scores.tolist()}

    return app
