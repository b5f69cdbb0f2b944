"""Casebook: the case studies of *Machine Learning System Design Interview* as production pipelines."""
