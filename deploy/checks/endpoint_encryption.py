"""What checkov cannot check in CloudFormation: SageMaker endpoint-config encryption.

Rules for one ``AWS::SageMaker::EndpointConfig`` (``problems`` returns one line per breach):
- data capture is configured and encrypted: ``DataCaptureConfig.KmsKeyId`` is set (captured
  bodies are real requests);
- the ML storage volume is encrypted with our key (``KmsKeyId``) on instance types that
  accept one; types with local NVMe storage (g4dn among them) reject a volume key, and their
  instance storage is encrypted by the hardware, so there the key must be absent or
  conditional: ``Fn::If`` with the key in one branch and ``AWS::NoValue`` in the other.

Pure functions over the template's parsed YAML (intrinsics as ``{"Fn::If": [...]}``); the
checkov wrapper lives in ``external/`` so this module imports without checkov.
"""

from __future__ import annotations

from typing import Any

NVME_FAMILIES = frozenset(
    {"g4dn", "g5", "g6", "g6e", "p3dn", "p4d", "p4de", "p5", "c5d", "c6id", "m5d", "r5d"}
)
NO_VALUE = {"Ref": "AWS::NoValue"}


def _is_set(value: Any) -> bool:
    return value not in (None, "", NO_VALUE)


def _is_conditional_key(value: Any) -> bool:
    if not isinstance(value, dict) or set(value) != {"Fn::If"}:
        return False
    args = value["Fn::If"]
    if not isinstance(args, list) or len(args) != 3:
        return False
    branches = args[1:]
    return any(_is_set(b) for b in branches) and any(b == NO_VALUE for b in branches)


def _family(instance_type: Any) -> str | None:
    """The family of a literal type (ml.g4dn.xlarge -> g4dn); None for an intrinsic."""
    if isinstance(instance_type, str) and instance_type.count(".") == 2:
        return instance_type.split(".")[1]
    return None


def problems(properties: dict[str, Any]) -> list[str]:
    found = []
    capture = properties.get("DataCaptureConfig")
    if not isinstance(capture, dict):
        found.append("no DataCaptureConfig: endpoint requests are not captured to S3 with KMS")
    elif not _is_set(capture.get("KmsKeyId")):
        found.append("DataCaptureConfig has no KmsKeyId: captured requests are not KMS-encrypted")
    variants = properties.get("ProductionVariants") or []
    families = [_family(v.get("InstanceType")) for v in variants if isinstance(v, dict)]
    all_nvme = bool(families) and all(f in NVME_FAMILIES for f in families)
    key = properties.get("KmsKeyId")
    if _is_conditional_key(key):
        return found
    if _is_set(key) and all_nvme:
        found.append(
            f"KmsKeyId is set but {', '.join(sorted(set(map(str, families))))} has local NVMe "
            "storage: SageMaker rejects a volume key there"
        )
    elif not _is_set(key) and not all_nvme:
        found.append(
            "no KmsKeyId: the ML storage volume is not encrypted with the stack's key "
            "(make it conditional on the instance type if NVMe types are allowed)"
        )
    return found
