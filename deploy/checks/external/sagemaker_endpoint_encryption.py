"""checkov check CKV_FRAUD_1: SageMaker endpoint-config storage and capture encryption.

Loaded by ``checkov --external-checks-dir deploy/checks/external`` with the repository on
PYTHONPATH; the rule itself is ``deploy.checks.endpoint_encryption.problems``.
"""

from __future__ import annotations

from typing import Any

from checkov.cloudformation.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult

from deploy.checks.endpoint_encryption import problems


class SageMakerEndpointEncryption(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="SageMaker endpoint config encrypts its volume (unless NVMe) and data capture",
            id="CKV_FRAUD_1",
            categories=[CheckCategories.ENCRYPTION],
            supported_resources=["AWS::SageMaker::EndpointConfig"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> Any:
        found = problems(conf.get("Properties") or {})
        self.details.extend(found)
        return CheckResult.FAILED if found else CheckResult.PASSED


check = SageMakerEndpointEncryption()
