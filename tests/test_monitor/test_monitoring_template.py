"""deploy/templates/monitoring.yaml: the requests it makes AWS send, checked against
botocore's service models (the scheduler's CreateProcessingJob input, the Model Monitor
schedule through Stubber, each pipeline step's arguments), and the names it shares with
the monitor (environment, metrics, dimensions) and with ``train`` (metric regexes)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator
from cfnlint.decode import cfn_yaml

from model.candidate_comparison import compare
from model.sagemaker_train import METRIC_DEFINITIONS
from monitor.cloudwatch import dimensions
from monitor.settings import MonitorSettings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "templates" / "monitoring.yaml"
VALUES = {
    "EndpointName": "fraud-score",
    "BucketName": "fraud-bucket",
    "KmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/abcd",
    "AlarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:fraud-score-alarms",
    "TrainingImageUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraud-train:1",
    "ServingImageUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraud-serve:1",
    "RetrainingJobRole.Arn": "arn:aws:iam::123456789012:role/fraud-retraining",
    "BaselinePrefix": "models/current/",
    "LabelsKey": "labels/labels.csv",
    "LabelDelayDays": "7",
    "QualityWindowHours": "192",
    "MonitorInstanceType": "ml.m5.large",
    "TrainingInstanceType": "ml.g4dn.xlarge",
    "TrainingRepositoryName": "fraud-train",
    "ModelPackageGroupName": "fraud-score",
    "AveragePrecisionMin": "0.6",
    "DeclineRateMax": "0.02",
    "ReviewRateMax": "0.05",
    "MonitorRole.Arn": "arn:aws:iam::123456789012:role/fraud-monitor",
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
}
# what EventBridge Scheduler puts in place of its context attributes
EXECUTION_ID = "d1bcb1d5-0d6b-4c5d-9a0e-2c1f0b8f6d4e"
SCHEDULED = "2024-05-01T14:10:00Z"


def resources() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE))["Resources"]


def substitute(node: Any) -> Any:
    """Resolve Fn::Sub / Ref / GetAtt with the test values (the rest as it is)."""
    if isinstance(node, dict):
        if "Fn::Sub" in node:
            text = node["Fn::Sub"]
            text = text[0] if isinstance(text, list) else text
            return re.sub(r"\$\{([^}]+)\}", lambda m: VALUES[m.group(1)], text)
        if "Ref" in node:
            return VALUES[node["Ref"]]
        if "Fn::GetAtt" in node:
            return VALUES[".".join(node["Fn::GetAtt"])]
        return {k: substitute(v) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v) for v in node]
    return node


def scheduler_input(name: str) -> dict[str, Any]:
    text = substitute(resources()[name]["Properties"]["Target"]["Input"])
    text = text.replace("<aws.scheduler.execution-id>", EXECUTION_ID)
    return dict(json.loads(text.replace("<aws.scheduler.scheduled-time>", SCHEDULED)))


def validate(operation: str, params: dict[str, Any]) -> None:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    shape = client.meta.service_model.operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


@pytest.mark.parametrize("schedule", ["HourlySchedule", "DailyQualitySchedule"])
def test_scheduled_job_is_a_valid_create_processing_job_request(schedule: str) -> None:
    request = scheduler_input(schedule)
    validate("CreateProcessingJob", request)
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", request["ProcessingJobName"])
    assert request["AppSpecification"]["ContainerEntrypoint"] == ["monitor"]


def test_hourly_job_environment_is_the_monitors_hour_before_the_scheduled_time() -> None:
    env = scheduler_input("HourlySchedule")["Environment"]
    settings = MonitorSettings.from_env(env)
    assert settings.start_time == dt.datetime(2024, 5, 1, 13, tzinfo=dt.UTC)
    assert settings.end_time == dt.datetime(2024, 5, 1, 14, tzinfo=dt.UTC)
    assert settings.dataset_source == "s3://fraud-bucket/capture"
    assert settings.publish_cloudwatch_metrics and not settings.under_model_monitor


def test_daily_quality_job_scores_the_newest_labelled_day() -> None:
    settings = MonitorSettings.from_env(scheduler_input("DailyQualitySchedule")["Environment"])
    assert settings.label_source == "s3://fraud-bucket/labels/labels.csv"
    oldest_day = settings.start_time.date()
    assert (
        oldest_day == (settings.end_time - dt.timedelta(days=settings.label_delay_days + 1)).date()
    )


def test_model_monitor_schedule_is_a_valid_request() -> None:
    props = substitute(resources()["MonitoringSchedule"]["Properties"])
    client = boto3.client(
        "sagemaker", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:monitoring-schedule/fraud-score-monitor"
    with Stubber(client) as stub:
        stub.add_response("create_monitoring_schedule", {"MonitoringScheduleArn": arn}, props)
        client.create_monitoring_schedule(**props)
    definition = props["MonitoringScheduleConfig"]["MonitoringJobDefinition"]
    assert definition["MonitoringAppSpecification"]["ContainerEntrypoint"] == ["monitor"]


def _placeholders(node: Any) -> Any:
    """Pipeline expressions ({"Get": ...}, {"Std:Join": ...}) -> strings of a valid shape."""
    if isinstance(node, dict):
        if {"Get", "Std:Join", "Std:JsonGet"} & node.keys():
            return "s3://fraud-bucket/resolved-at-run-time"
        return {k: _placeholders(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_placeholders(v) for v in node]
    return node


def pipeline() -> dict[str, Any]:
    body = resources()["RetrainingPipeline"]["Properties"]["PipelineDefinition"]
    return dict(json.loads(substitute(body["PipelineDefinitionBody"])))


def test_pipeline_steps_are_valid_requests() -> None:
    steps = {s["Name"]: s for s in pipeline()["Steps"]}
    train = _placeholders(steps["Train"]["Arguments"])
    validate("CreateTrainingJob", {"TrainingJobName": "pipelines-x", **train})
    assert train["EnableManagedSpotTraining"] is True and "CheckpointConfig" in train
    evaluate = _placeholders(steps["Evaluate"]["Arguments"])
    validate("CreateProcessingJob", {"ProcessingJobName": "pipelines-y", **evaluate})
    (register,) = steps["CandidateBetter"]["Arguments"]["IfSteps"]
    validate("CreateModelPackage", _placeholders(register["Arguments"]))
    assert register["Arguments"]["ModelApprovalStatus"] == "PendingManualApproval"
    (container,) = register["Arguments"]["InferenceSpecification"]["Containers"]
    assert container["Image"] == VALUES["ServingImageUri"]  # train image runs the jobs


def test_pipeline_trains_and_evaluates_on_the_features_steps_table() -> None:
    steps = {s["Name"]: s for s in pipeline()["Steps"]}
    assert [s["Name"] for s in pipeline()["Steps"]][0] == "Features"
    features = _placeholders(steps["Features"]["Arguments"])
    validate("CreateProcessingJob", {"ProcessingJobName": "pipelines-f", **features})
    (source,) = steps["Features"]["Arguments"]["ProcessingInputs"]
    assert source["S3Input"]["S3Uri"] == {"Get": "Parameters.TransactionsUri"}
    table = {"Get": "Steps.Features.ProcessingOutputConfig.Outputs['features'].S3Output.S3Uri"}
    (channel,) = steps["Train"]["Arguments"]["InputDataConfig"]
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == table
    inputs = {i["InputName"]: i for i in steps["Evaluate"]["Arguments"]["ProcessingInputs"]}
    assert inputs["data"]["S3Input"]["S3Uri"] == table
    # the jobs' role may write where the step uploads its table
    (output,) = steps["Features"]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    prefix = output["S3Output"]["S3Uri"]["Std:Join"]["Values"][0].removeprefix("s3://")
    policy = substitute(resources()["RetrainingJobRole"]["Properties"]["Policies"][0])
    writes = [s for s in policy["PolicyDocument"]["Statement"] if s["Action"] == "s3:PutObject"]
    assert [f"arn:aws:s3:::{prefix}/*" in w["Resource"] for w in writes] == [True]


def test_pipeline_reads_what_train_and_the_comparison_write() -> None:
    steps = {s["Name"]: s for s in pipeline()["Steps"]}
    spec = steps["Train"]["Arguments"]["AlgorithmSpecification"]
    assert spec["MetricDefinitions"] == METRIC_DEFINITIONS
    evaluation = {"models": {
        "fraudnet": {"auc_roc": 0.9, "average_precision": 0.7, "card_precision_at_100": 0.3},
        "xgboost": {"auc_roc": 0.88, "average_precision": 0.65, "card_precision_at_100": 0.28},
    }}  # fmt: skip
    comparison = compare(evaluation, evaluation)
    for condition in steps["CandidateBetter"]["Arguments"]["Conditions"]:
        for side in ("LeftValue", "RightValue"):
            group, metric = condition[side]["Std:JsonGet"]["Path"].split(".")
            assert metric in comparison[group]
    assert comparison["candidate_better"] is False  # equal AP is not better
    # both models scored on the weeks of the candidate's TrainStart
    evaluate = steps["Evaluate"]["Arguments"]["AppSpecification"]
    assert evaluate["ContainerArguments"][1] == {"Get": "Parameters.TrainStart"}
    assert "--train-start $1" in evaluate["ContainerEntrypoint"][2]
    train = steps["Train"]["Arguments"]["HyperParameters"]
    assert train["train_start"] == {"Get": "Parameters.TrainStart"}


def test_alarms_watch_metrics_the_monitor_publishes_with_its_dimensions() -> None:
    res = resources()
    expected = [{"Name": k, "Value": v} for k, v in dimensions("fraud-score", None).items()]
    alarms = (
        "DriftAlarm",
        "QualityAlarm",
        "DeclineRateAlarm",
        "ReviewRateAlarm",
        "MonitorSilentAlarm",
    )
    for name in alarms:
        props = substitute(res[name]["Properties"])
        assert props["Namespace"] == "/aws/sagemaker/Endpoints/data-metrics"
        assert props["Dimensions"] == expected
    model_monitor = substitute(res["MonitoringSchedule"]["Properties"])
    assert model_monitor["MonitoringScheduleName"] == expected[1]["Value"]
