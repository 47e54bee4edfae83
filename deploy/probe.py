"""In-region synthetic probe: scores one known request on the endpoint, publishes the outcome.

Runs as the regional stack's Lambda function every minute (templates/regional.yaml inlines
this file; a test checks the copy is identical). Its metrics feed the alarms the Route 53
health check follows, so a region's health reflects its endpoint even when no caller is
sending it traffic. The request is a feature vector, not a transaction: a transaction would
enter the online store's per-customer and per-terminal windows. The inference id starts with
``probe-`` so captured probe requests can be told from real ones.

``fraud deploy drill`` sets ``PROBE_DRILL_FAIL=1`` on the function to make the region fail
its health on purpose, and removes it to restore.

Metrics (namespace ``FraudScoring/Probe``, dimension ``EndpointName``): ``ProbeSuccess`` 1 or
0 and ``ProbeLatency`` in milliseconds. A run that cannot publish publishes nothing, which
the success alarm treats as failing.
"""

import json
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

import boto3

NAMESPACE = "FraudScoring/Probe"
BODY = json.dumps({"instances": [[0.0] * 15]})


def settings(env: Mapping[str, str]) -> dict[str, Any]:
    return {
        "endpoint": env["ENDPOINT_NAME"],
        "endpoint_url": env.get("PROBE_AWS_ENDPOINT_URL"),  # a local AWS in tests
        "drill": env.get("PROBE_DRILL_FAIL") == "1",  # `fraud deploy drill` fails the region
    }


def probe(runtime: Any, endpoint: str) -> tuple[bool, float, str]:
    """(success, latency in ms, why) of one scoring request."""
    started = time.monotonic()
    try:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint,
            ContentType="application/json",
            Accept="application/json",
            Body=BODY,
            InferenceId="probe-" + uuid.uuid4().hex,
        )
        answer = json.loads(response["Body"].read())
        if not isinstance(answer, dict) or not answer.get("predictions"):
            return False, (time.monotonic() - started) * 1000, "answer without predictions"
        return True, (time.monotonic() - started) * 1000, "scored"
    except Exception as exc:  # the probe reports every failure as a failed run
        return False, (time.monotonic() - started) * 1000, type(exc).__name__


def publish(cloudwatch: Any, endpoint: str, ok: bool, latency_ms: float) -> None:
    dims = [{"Name": "EndpointName", "Value": endpoint}]
    cloudwatch.put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {"MetricName": "ProbeSuccess", "Dimensions": dims, "Value": 1.0 if ok else 0.0},
            {
                "MetricName": "ProbeLatency",
                "Dimensions": dims,
                "Value": latency_ms,
                "Unit": "Milliseconds",
            },
        ],
    )


def handler(event: Any, context: Any, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    config = settings(os.environ if env is None else env)
    url = config["endpoint_url"]
    runtime = boto3.client("sagemaker-runtime", endpoint_url=url)
    ok, latency_ms, why = probe(runtime, config["endpoint"])
    if config["drill"]:
        ok, why = False, "drill: PROBE_DRILL_FAIL=1"
    publish(boto3.client("cloudwatch", endpoint_url=url), config["endpoint"], ok, latency_ms)
    print(json.dumps({"endpoint": config["endpoint"], "ok": ok, "ms": latency_ms, "why": why}))
    return {"ok": ok, "latency_ms": latency_ms, "why": why}
