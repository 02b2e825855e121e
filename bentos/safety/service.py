"""The safety bento: `POST /check` and `POST /check_batch` (PII, prompt injection, toxicity by policy).

Start it with ``bentoml serve bentos.safety.service:Safety --host 127.0.0.1 --port 3004``.
/readyz answers 200 once every detector is loaded (spaCy + Presidio, jailguard's ONNX MiniLM,
the profanity model); the first start exports MiniLM to ONNX under RAGYARD_HOME (a few seconds).
"""

import anyio
import bentoml

from bentos.safety.checker import SafetyChecker
from ragyard.contracts.safety import CheckBatchRequest, CheckBatchResponse, CheckRequest, CheckResponse, Direction
from ragyard.kit.errors import ServiceError
from ragyard.kit.serving import answers_errors, serve_errors
from ragyard.settings import SafetyBentoSettings, SafetySettings


def check_allowed(item: CheckRequest, limits: SafetySettings, at: str = "") -> None:
    """A 4xx naming the field for what the settings refuse; `at` is the item's place in a batch
    ("items[3]."), in the message; the batch's field, `items`, is then the param."""
    size = len(item.text.encode("utf-8", "surrogatepass"))
    if size > limits.max_text_bytes:
        raise ServiceError(
            413,
            f"{at}text: {size} bytes exceed max_text_bytes={limits.max_text_bytes}",
            param="items" if at else "text",
        )
    if item.policy not in limits.policies:
        raise ServiceError(
            400,
            f"{at}policy: unknown policy {item.policy!r}; known: {', '.join(sorted(limits.policies))}",
            param="items" if at else "policy",
        )


@bentoml.service(resources={"cpu": "2"}, traffic={"timeout": 60, "max_concurrency": 32}, threads=4)
class Safety:
    def __init__(self) -> None:
        settings = SafetyBentoSettings()
        self.limits = settings.safety
        self.checker = SafetyChecker.from_settings(settings)

    def __is_ready__(self) -> bool:
        return self.checker is not None

    @bentoml.api(route="/check", input_spec=CheckRequest)
    @answers_errors
    def check(self, text: str, direction: Direction, policy: str = "default") -> CheckResponse:
        """Check one text against a named policy: allow, flag, redact (PII) or block."""
        check_allowed(CheckRequest.model_construct(text=text, direction=direction, policy=policy), self.limits)
        return self.checker.check(text, direction, policy)

    @bentoml.api(route="/check_batch", input_spec=CheckBatchRequest)
    @answers_errors
    async def check_batch(self, items: list[CheckRequest]) -> CheckBatchResponse:
        """Check up to max_batch_items texts; results in the same order."""
        if len(items) > self.limits.max_batch_items:
            raise ServiceError(
                413, f"items: {len(items)} items exceed max_batch_items={self.limits.max_batch_items}", param="items"
            )
        for i, item in enumerate(items):
            check_allowed(item, self.limits, at=f"items[{i}].")
        results = [
            await anyio.to_thread.run_sync(self.checker.check, item.text, item.direction, item.policy) for item in items
        ]
        return CheckBatchResponse(results=results)


serve_errors(Safety)
