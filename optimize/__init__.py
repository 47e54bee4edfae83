"""ONNX export and optimisation of the trained model."""
