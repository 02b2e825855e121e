"""Durable facts from what a user said, by a model of the LLM bento (its OpenAI API), in one call.

The model sees the user's turn (pseudonymized) and the user's nearest memories numbered [0]..[n] (small
integers, not ids: small models copy them more reliably), and answers JSON operations constrained by a
schema: add a fact, update memory N, delete memory N. It proposes; `gate.decide` disposes.
The prompt and the gate are the ones measured against mem0 on 15 hand-written exchanges (issue 14: 4/4
updates and deletes right with Qwen 1.5B, no unrelated memory overwritten; README, "Memory bento").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import cast

import openai
from openai.types.chat import ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

from bentos.memory.errors import DependencyDown

SYSTEM = """You keep long-term memories about one user. You get the user's existing memories (with ids) and a new message from the user.
Return JSON {"operations": [...]} where each operation is one of:
- {"op": "add", "text": "..."}: a durable fact the user stated about themselves (name, home, job, family, pets, health, preferences, contact details, projects, tools). One short sentence starting with "User", one fact per operation.
- {"op": "update", "id": N, "text": "..."}: the message changes existing memory N; give the full corrected sentence.
- {"op": "delete", "id": N}: the user retracts memory N or asks to forget it.
Never store greetings, thanks, small talk, questions, or general knowledge.
Tokens like <PHONE_NUMBER_3f2a9c1b> or <PERSON_51c2aa07> stand for private values: they are facts like any other; copy them exactly.
If nothing durable was said, return {"operations": []}.
Example: memories [0] User lives in Rome. [1] User likes tea. Message: "I moved to Oslo and I got a cat." ->
{"operations": [{"op": "update", "id": 0, "text": "User lives in Oslo."}, {"op": "add", "text": "User has a cat."}]}"""  # noqa: E501 - the prompt as measured, one rule a line

SCHEMA = {
    "type": "object",
    "required": ["operations"],
    "properties": {
        "operations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["op"],
                "properties": {
                    "op": {"type": "string", "enum": ["add", "update", "delete"]},
                    "id": {"type": "integer"},
                    "text": {"type": "string"},
                },
            },
        }
    },
}

RESPONSE_FORMAT = cast(
    ResponseFormatJSONSchema, {"type": "json_schema", "json_schema": {"name": "operations", "schema": SCHEMA}}
)

# A user turn worth the model: it says something about the speaker, or asks to forget or remember.
# English only: a cost saver (chit-chat and general questions skip the model), switchable in settings.
FIRST_PERSON = re.compile(r"\b(i|i'm|i've|i'd|i'll|im|my|me|mine|myself|we|our|us|forget|remember)\b", re.IGNORECASE)


def speaks_of_oneself(text: str) -> bool:
    return FIRST_PERSON.search(text) is not None


@dataclass(frozen=True)
class Proposal:
    op: str  # "add", "update" or "delete"
    index: int | None  # the memory's number in the prompt (update, delete)
    text: str


def prompt(turn: str, memories: list[str]) -> list[ChatCompletionMessageParam]:
    listed = " ".join(f"[{i}] {text}" for i, text in enumerate(memories)) or "(none)"
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Existing memories: {listed}\nMessage: {turn}"},
    ]


def parse(content: str) -> list[Proposal]:
    """The operations of a reply; malformed items are skipped (the schema makes them rare)."""
    try:
        operations = json.loads(content).get("operations", [])
    except (json.JSONDecodeError, AttributeError):
        return []
    proposals = []
    for item in operations if isinstance(operations, list) else []:
        if not isinstance(item, dict) or item.get("op") not in ("add", "update", "delete"):
            continue
        index = item.get("id")
        text = item.get("text")
        proposals.append(
            Proposal(
                item["op"],
                index if isinstance(index, int) else None,
                " ".join(text.split()) if isinstance(text, str) else "",
            )
        )
    return proposals


class ExtractionModel:
    """One catalog model of the LLM bento; failures it may recover from are `DependencyDown("llm")`."""

    def __init__(self, llm_url: str, model: str, max_tokens: int, timeout_s: float):
        # Retries are the extraction queue's (with a backoff that survives a long outage), not the SDK's.
        self.client = openai.AsyncOpenAI(
            base_url=llm_url.rstrip("/") + "/v1", api_key="ragyard-memory", timeout=timeout_s, max_retries=0
        )
        self.model, self.max_tokens = model, max_tokens

    async def propose(self, turn: str, memories: list[str]) -> list[Proposal]:
        try:
            response = await self.client.chat.completions.create(
                model=self.model,
                messages=prompt(turn, memories),
                temperature=0.0,
                max_tokens=self.max_tokens,
                response_format=RESPONSE_FORMAT,
            )
        except (
            openai.APIConnectionError,
            openai.APITimeoutError,
            openai.RateLimitError,
            openai.InternalServerError,
        ) as exc:
            raise DependencyDown("llm", f"{type(exc).__name__}: {exc}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise DependencyDown("llm", f"{exc.status_code}: {exc.message}") from exc
            raise
        return parse(response.choices[0].message.content or "")

    async def aclose(self) -> None:
        await self.client.close()
