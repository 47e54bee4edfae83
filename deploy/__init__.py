"""CloudFormation and boto3 deployment (its own issue)."""
