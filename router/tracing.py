"""Request traces: one trace per request, a span per flow step, one generation.

The flow records spans in memory (no I/O on the request path); `Tracer.submit` puts the finished
trace on a bounded queue and a background thread exports it: to Langfuse (SDK v2) when its keys are
configured, else as OTLP/HTTP protobuf to the MLflow server's `/v1/traces` (header
`x-mlflow-experiment-id`), where it shows in the MLflow UI. A full queue drops the trace and counts
it; after an export error traces are dropped for a few seconds (a down backend is not retried
per request). Tracing never blocks or fails a request. Feedback scores are not traces: they travel
as events (router/events.py) and reach the exporter's `score` through their consumer, never dropped.

What the flow puts in a trace is already redacted by the safety step when the policy redacts.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx

from ragyard.settings import RouterBentoSettings

logger = logging.getLogger("ragyard.router.tracing")
PAUSE_AFTER_FAILURE_S = 5.0
# The assessment metadata key holding a feedback score's id (its event id).
SCORE_ID_KEY = "ragyard.score_id"


@dataclass
class Span:
    name: str
    span_id: str
    start_ns: int
    end_ns: int = 0
    attributes: dict = field(default_factory=dict)
    error: str | None = None


@dataclass
class Generation:
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float
    currency: str
    prompt_name: str
    prompt_version: int | None  # None: the built-in template (MLflow unreachable)
    route: dict
    usage_estimated: bool
    start_ns: int
    end_ns: int
    fallbacks: list[dict]


@dataclass
class Trace:
    trace_id: str  # 32 hex digits (OTLP trace id)
    name: str
    user_id: str | None
    session_id: str | None
    start_ns: int = field(default_factory=time.time_ns)
    end_ns: int = 0
    input: str = ""
    output: str = ""
    attributes: dict = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    generation: Generation | None = None
    error: str | None = None

    @contextmanager
    def span(self, name: str, /, **attributes) -> Iterator[Span]:
        span = Span(name, os.urandom(8).hex(), time.time_ns(), attributes=dict(attributes))
        self.spans.append(span)
        try:
            yield span
        except BaseException as exc:
            span.error = f"{type(exc).__name__}: {exc}"[:500]
            raise
        finally:
            span.end_ns = time.time_ns()

    def finish(self, output: str = "", error: str | None = None) -> None:
        self.end_ns = time.time_ns()
        self.output = output
        self.error = error


def new_trace_id() -> str:
    return os.urandom(16).hex()


class Tracer:
    """A bounded queue and one exporter thread."""

    def __init__(self, exporter, queue_size: int):
        self.exporter = exporter
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self.exported = 0
        self.thread = threading.Thread(target=self._run, name="ragyard-trace-export", daemon=True)
        self.thread.start()

    def submit(self, item: Trace | None) -> None:
        """A finished Trace (None: the end). Feedback scores do not come this way: they are events
        (router/events.py), exported by their consumer, never dropped."""
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        paused_until = 0.0
        while True:
            item = self.queue.get()
            if item is None:
                return
            if time.monotonic() < paused_until:  # the backend just failed: do not queue up behind it
                self.dropped += 1
                continue
            try:
                self.exporter.export(item)
                self.exported += 1
            except Exception as exc:  # noqa: BLE001 - tracing must never take the router down
                paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_S
                self.dropped += 1
                logger.warning("trace export failed, dropping traces for %.0f s: %r", PAUSE_AFTER_FAILURE_S, exc)

    def close(self, timeout_s: float = 5.0) -> None:
        self.submit(None)
        self.thread.join(timeout_s)
        self.exporter.flush()


def _iso(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


class LangfuseExporter:
    """Traces through the Langfuse SDK (which batches and sends in its own background thread)."""

    def __init__(self, host: str, public_key: str, secret_key: str):
        from langfuse import Langfuse

        self.client = Langfuse(public_key=public_key, secret_key=secret_key, host=host)

    def export(self, trace: Trace) -> None:
        lf_trace = self.client.trace(
            id=trace.trace_id, name=trace.name, user_id=trace.user_id, session_id=trace.session_id,
            input=trace.input, output=trace.output, metadata=trace.attributes, timestamp=_iso(trace.start_ns))
        for span in trace.spans:
            lf_trace.span(id=span.span_id, name=span.name, start_time=_iso(span.start_ns), end_time=_iso(span.end_ns),
                          metadata=span.attributes, level="ERROR" if span.error else "DEFAULT",
                          status_message=span.error)
        if g := trace.generation:
            lf_trace.generation(
                name="generation", model=g.model, start_time=_iso(g.start_ns), end_time=_iso(g.end_ns),
                usage_details={"input": g.prompt_tokens, "output": g.completion_tokens},
                cost_details={"total": g.cost},
                metadata={"prompt_name": g.prompt_name, "prompt_version": g.prompt_version, "route": g.route,
                          "currency": g.currency, "usage_estimated": g.usage_estimated, "fallbacks": g.fallbacks},
                output=trace.output)

    def score(self, trace_id: str, name: str, value: float, comment: str | None, score_id: str) -> None:
        """Through Langfuse's API at once (not the SDK's background batch, which swallows errors): the
        feedback event is acked only after this returns. One score per id: exported twice, it stays one."""
        from langfuse.api import CreateScoreRequest

        self.client.client.score.create(request=CreateScoreRequest(
            id=score_id, traceId=trace_id, name=name, value=value, comment=comment))

    def flush(self) -> None:
        self.client.flush()


def _any_value(value):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    return AnyValue(string_value=json.dumps(value, default=str))


def otlp_request(trace: Trace) -> bytes:
    """The trace as an OTLP ExportTraceServiceRequest: a root span, the steps and the generation as children."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

    def attrs(values: dict) -> list:
        return [KeyValue(key=k, value=_any_value(v)) for k, v in values.items() if v is not None]

    def status(error: str | None):
        if error:
            return Status(code=Status.STATUS_CODE_ERROR, message=error)
        return Status(code=Status.STATUS_CODE_OK)

    trace_id = bytes.fromhex(trace.trace_id)
    root_id = os.urandom(8)
    root = ProtoSpan(
        trace_id=trace_id, span_id=root_id, name=trace.name, kind=ProtoSpan.SPAN_KIND_SERVER,
        start_time_unix_nano=trace.start_ns, end_time_unix_nano=trace.end_ns or time.time_ns(),
        attributes=attrs({**trace.attributes, "mlflow.spanType": "CHAIN", "mlflow.spanInputs": trace.input,
                          "mlflow.spanOutputs": trace.output, "user.id": trace.user_id,
                          "session.id": trace.session_id}),
        status=status(trace.error))
    spans = [root]
    for span in trace.spans:
        spans.append(ProtoSpan(
            trace_id=trace_id, span_id=bytes.fromhex(span.span_id), parent_span_id=root_id, name=span.name,
            kind=ProtoSpan.SPAN_KIND_INTERNAL, start_time_unix_nano=span.start_ns,
            end_time_unix_nano=span.end_ns or time.time_ns(), attributes=attrs(span.attributes),
            status=status(span.error)))
    if g := trace.generation:
        spans.append(ProtoSpan(
            trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id, name="generation",
            kind=ProtoSpan.SPAN_KIND_CLIENT, start_time_unix_nano=g.start_ns, end_time_unix_nano=g.end_ns,
            attributes=attrs({
                "mlflow.spanType": "LLM", "gen_ai.request.model": g.model,
                "gen_ai.usage.input_tokens": g.prompt_tokens, "gen_ai.usage.output_tokens": g.completion_tokens,
                "ragyard.cost": g.cost, "ragyard.currency": g.currency, "ragyard.prompt.name": g.prompt_name,
                "ragyard.prompt.version": g.prompt_version, "ragyard.route": g.route,
                "ragyard.usage_estimated": g.usage_estimated, "ragyard.fallbacks": g.fallbacks,
                "mlflow.spanOutputs": trace.output}),
            status=status(None)))
    resource = ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])
    resource.resource.attributes.append(KeyValue(key="service.name", value=_any_value("ragyard-router")))
    return ExportTraceServiceRequest(resource_spans=[resource]).SerializeToString()


class MlflowOtlpExporter:
    """OTLP/HTTP protobuf to an MLflow server; the experiment is looked up (or created) by name once."""

    def __init__(self, mlflow_url: str, experiment: str):
        self.url = mlflow_url.rstrip("/")
        self.experiment = experiment
        self.experiment_id: str | None = None
        self.http = httpx.Client(timeout=10.0)

    def _experiment_id(self) -> str:
        if self.experiment_id is None:
            found = self.http.get(f"{self.url}/api/2.0/mlflow/experiments/get-by-name",
                                  params={"experiment_name": self.experiment})
            if found.status_code == 200:
                self.experiment_id = found.json()["experiment"]["experiment_id"]
            else:
                created = self.http.post(f"{self.url}/api/2.0/mlflow/experiments/create",
                                         json={"name": self.experiment})
                if created.status_code != 200:  # created meanwhile by another worker: look it up again
                    found = self.http.get(f"{self.url}/api/2.0/mlflow/experiments/get-by-name",
                                          params={"experiment_name": self.experiment})
                    found.raise_for_status()
                    self.experiment_id = found.json()["experiment"]["experiment_id"]
                else:
                    self.experiment_id = created.json()["experiment_id"]
        return self.experiment_id

    def export(self, trace: Trace) -> None:
        response = self.http.post(
            f"{self.url}/v1/traces", content=otlp_request(trace),
            headers={"content-type": "application/x-protobuf", "x-mlflow-experiment-id": self._experiment_id()})
        response.raise_for_status()

    def score(self, trace_id: str, name: str, value: float, comment: str | None, score_id: str) -> None:
        """Feedback as an MLflow assessment on the trace (MLflow's id for OTLP trace X is tr-X), once
        per score id: one already on the trace (an export repeated after a lost ack) is not added again.
        Raises while the trace is not in MLflow yet (its export may lag): the event is retried."""
        found = self.http.get(f"{self.url}/api/3.0/mlflow/traces/tr-{trace_id}")
        found.raise_for_status()
        assessments = found.json()["trace"]["trace_info"].get("assessments", [])
        if any((a.get("metadata") or {}).get(SCORE_ID_KEY) == score_id for a in assessments):
            return
        response = self.http.post(
            f"{self.url}/api/3.0/mlflow/traces/tr-{trace_id}/assessments",
            json={"assessment": {
                "trace_id": f"tr-{trace_id}", "assessment_name": name,
                "source": {"source_type": "HUMAN", "source_id": "ragyard-feedback"},
                "feedback": {"value": value}, "rationale": comment or "", "metadata": {SCORE_ID_KEY: score_id}}})
        response.raise_for_status()

    def flush(self) -> None:
        pass


def tracer_from_settings(settings: RouterBentoSettings) -> Tracer:
    lf = settings.langfuse
    if lf.enabled:
        exporter = LangfuseExporter(lf.host, lf.public_key, lf.secret_key)
    else:
        exporter = MlflowOtlpExporter(settings.mlflow.url, settings.router.trace_experiment)
    return Tracer(exporter, settings.router.trace_queue_size)
