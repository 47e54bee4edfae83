"""Drift and quality monitoring of captured live traffic against the package baseline."""
