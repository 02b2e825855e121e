"""A backend bento that is being restarted: its port accepts connections (BentoML's process manager
binds it first) but nothing answers until its worker has loaded. The router's retrieval step then
answers 503 naming the retriever, not a generic timeout."""

import asyncio
import socket

import pytest

from ragyard.settings import RetrieverSettings, RouterSettings, Settings
from router.flow import ChatRequest, Flow, Outcome, Prepared
from router.resilience import BackendUnavailable, Deadline
from router.tracing import Trace


def test_a_retriever_that_accepts_but_never_answers_is_a_503_naming_it(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as restarting:  # listens, never accepts
        port = restarting.getsockname()[1]
        settings = Settings(
            home=tmp_path,
            retriever=RetrieverSettings(port=port),
            router=RouterSettings(retrieve_timeout_s=0.5, deadline_s=60),
        )
        request = ChatRequest(
            model="ragyard/auto",
            messages=[{"role": "user", "content": "what is a generator?"}],
            max_tokens=8,
            params={},
            stream=False,
            key=None,
        )
        prepared = Prepared(
            request,
            Trace(request.trace_id, "chat.completions", None, None),
            Deadline(60),
            Outcome(id=f"chatcmpl-{request.trace_id}", created=0, model=request.model),
        )

        async def retrieve() -> None:
            flow = Flow(settings)
            try:
                await flow.retrieve(prepared)
            finally:
                await flow.close()

        with pytest.raises(BackendUnavailable) as unavailable:
            asyncio.run(retrieve())
    assert str(unavailable.value) == f"retriever at http://127.0.0.1:{port} did not answer within 0.5 s"
    error = Flow.as_flow_error(unavailable.value)
    assert (error.status, error.code) == (503, "backend_unavailable")
