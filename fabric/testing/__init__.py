"""Helpers for tests, benchmarks and the demo: a local Kafka-compatible broker, fakes."""
