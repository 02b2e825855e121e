"""The wire contracts of the bentos that a client or another package speaks: one module per service,
the pydantic request and response schemas of its HTTP API (the bento validates with the same ones).
Every bento's error body is OpenAI's, written by the service kit (`ragyard.kit.errors`).

The LLM and router bentos speak OpenAI's API: their schemas stay beside their services, and
OpenAI's own client is theirs."""
