"""The naive baseline a tutorial gives: FastAPI + pydantic + PyTorch eager, each request
scored alone in the handler. Same model weights (the package's model.pt), same features."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from fastapi import FastAPI
from pydantic import BaseModel

from model.network import from_description


class Request(BaseModel):
    instances: list[list[float]]


def create_app() -> FastAPI:
    package = Path(os.environ.get("FRAUD_MODEL_DIR", "artifacts/package"))
    manifest = json.loads((package / "manifest.json").read_text())
    model = from_description(manifest["network"], package / "model.pt")
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
