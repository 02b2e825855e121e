"""Helpers the tests import: paths, ports, the stack builder, corpora, ingestion, the process guard.

Fixtures live in the conftest.py files; nothing here is a fixture, and no test imports a conftest."""
