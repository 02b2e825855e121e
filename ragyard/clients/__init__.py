"""Typed clients of the bentos, one module per service, speaking the wire contracts of
`ragyard.contracts`; every one raises a `ServiceUnavailable` when its service cannot answer."""
