"""The error body of OpenAI's API, which the OpenAI-compatible bentos answer and OpenAI's clients
parse into typed exceptions."""

from __future__ import annotations


def openai_error(message: str, param: str | None, code: str, type_: str = "invalid_request_error") -> dict:
    """The error body OpenAI's API returns, which its clients parse into exceptions."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
