"""Data, features, training and evaluation of the PyTorch fraud model.

Only ``model.network`` may be imported by the server: it imports nothing but torch.
"""
