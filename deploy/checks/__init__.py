"""Custom policy checks for the CloudFormation templates (run by ``make lint-cfn``)."""
