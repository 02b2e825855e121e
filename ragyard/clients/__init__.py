"""Typed clients of the bentos, one module per service, speaking the wire contracts of
`ragyard.contracts` on the base client of `base.py`: each raises the kit's `Unavailable` when its
service cannot answer and `Rejected` when it refuses the request."""
