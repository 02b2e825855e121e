"""The safety bento: `POST /check` and `POST /check_batch` (PII, prompt injection, toxicity by policy).

Start it with ``bentoml serve bentos.safety.service:Safety --host 127.0.0.1 --port 3004``.
/readyz answers 200 once every detector is loaded (spaCy + Presidio, jailguard's ONNX MiniLM,
the profanity model); the first start exports MiniLM to ONNX under RAGYARD_HOME (a few seconds).
"""

import anyio
import bentoml
from starlette.responses import JSONResponse

from bentos.safety.checker import SafetyChecker
from ragyard.contracts.safety import CheckBatchRequest, CheckBatchResponse, CheckRequest, CheckResponse, Direction
from ragyard.settings import SafetyBentoSettings, SafetySettings


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def refusal(item: CheckRequest, field: str, limits: SafetySettings) -> JSONResponse | None:
    """A 4xx for what the settings refuse, naming the field; None when the request is fine."""
    size = len(item.text.encode("utf-8", "surrogatepass"))
    if size > limits.max_text_bytes:
        return error(413, f"{field}text: {size} bytes exceed max_text_bytes={limits.max_text_bytes}")
    if item.policy not in limits.policies:
        return error(422, f"{field}policy: unknown policy {item.policy!r}; known: {', '.join(sorted(limits.policies))}")
    return None


@bentoml.service(resources={"cpu": "2"}, traffic={"timeout": 60, "max_concurrency": 32}, threads=4)
class Safety:
    def __init__(self) -> None:
        settings = SafetyBentoSettings()
        self.limits = settings.safety
        self.checker = SafetyChecker.from_settings(settings)

    def __is_ready__(self) -> bool:
        return self.checker is not None

    @bentoml.api(route="/check", input_spec=CheckRequest)
    def check(self, text: str, direction: Direction, policy: str = "default") -> CheckResponse:
        """Check one text against a named policy: allow, flag, redact (PII) or block."""
        item = CheckRequest.model_construct(text=text, direction=direction, policy=policy)
        if problem := refusal(item, "", self.limits):
            return problem
        return self.checker.check(text, direction, policy)

    @bentoml.api(route="/check_batch", input_spec=CheckBatchRequest)
    async def check_batch(self, items: list[CheckRequest]) -> CheckBatchResponse:
        """Check up to max_batch_items texts; results in the same order."""
        if len(items) > self.limits.max_batch_items:
            return error(413, f"items: {len(items)} items exceed max_batch_items={self.limits.max_batch_items}")
        for i, item in enumerate(items):
            if problem := refusal(item, f"items[{i}].", self.limits):
                return problem
        results = [await anyio.to_thread.run_sync(self.checker.check, item.text, item.direction, item.policy)
                   for item in items]
        return CheckBatchResponse(results=results)
