"""Evals: labeled datasets, replay through the graph, metrics and reports."""
