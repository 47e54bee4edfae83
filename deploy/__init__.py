"""CloudFormation and boto3 deployment (deploy/README.md)."""
