"""Evaluation harness: datasets it owns, pure metrics, and runs logged to MLflow."""
