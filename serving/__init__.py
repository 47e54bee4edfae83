"""SageMaker-compatible model server (its own issue; see serving/entrypoint.py)."""
