"""The CloudFormation templates as they are deployed.

The global template's ``AWS::ApiGateway::Deployment`` is a snapshot of the API's methods taken
when the resource is created: with a fixed logical ID, later method changes would never reach
the stage. :func:`render_global` renames it after a digest of the template's text, so every
change to the template creates a new deployment and moves the stage onto it (CloudFormation
then deletes the old one).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"
DEPLOYMENT = "Deployment"
# the logical ID where it is a whole word: not AWS::ApiGateway::Deployment, not DeploymentId
_LOGICAL_ID = re.compile(rf"(?<![:\w]){DEPLOYMENT}(?!\w)")


def deployment_id(text: str) -> str:
    return DEPLOYMENT + hashlib.sha256(text.encode()).hexdigest()[:12]


def render_global(text: str | None = None) -> str:
    """The global template with its API deployment named after the template's digest."""
    source = (TEMPLATES / "global.yaml").read_text() if text is None else text
    return _LOGICAL_ID.sub(deployment_id(source), source)
