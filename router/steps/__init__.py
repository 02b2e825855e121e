"""The steps of the gateway's flow (`router.flow`), one module each.

A step is a class built once per process by `router.wiring.build_flow` from its collaborators and
settings. Its methods take the request in flight (`router.turn.Turn`) and what earlier steps
returned, record a span with ``turn.step(name)``, await their calls under ``turn.guard`` (a timeout
within the request's deadline), and return typed results; a refusal is a `ServiceError`, which
the flow answers. docs/architecture.md says how to add one.
"""
