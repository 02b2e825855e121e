"""The service kit: what every bento and the router share as services, written once.

- `errors`: the one error type (`ServiceError`, with `Unavailable` and `Rejected` for what a called
  service answered) and its body on the wire, OpenAI's error shape; the status policy.
- `serving`: the one handler set every bento installs (`serve_errors`): FastAPI exception handlers
  for mounted apps, an ASGI middleware for everything BentoML answers itself, and `answers_errors`
  for `@bentoml.api` methods. Imports BentoML's web stack: only services import it.
- `metrics`: Prometheus metrics declared at import, created on first use, once per process.

The base HTTP client of the bento clients is `ragyard.clients.base`; the token estimates are
`ragyard.tokens`.
"""
