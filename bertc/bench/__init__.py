"""Measuring models: accuracy now; latency, throughput and the report build on it."""
