"""SageMaker-compatible model server (see serving/entrypoint.py)."""
