"""A backend bento that is being restarted: its port accepts connections (BentoML's process manager
binds it first) but nothing answers until its worker has loaded. The router's retrieval step then
answers 503 naming the retriever, not a generic timeout."""

import asyncio
import socket

import pytest

from ragyard.kit.errors import Unavailable
from ragyard.settings import RetrieverSettings, RouterSettings, Settings
from router.chat import ChatRequest, Message
from router.flow import as_service_error
from router.wiring import build_flow


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
            messages=(Message("user", "what is a generator?"),),
            max_tokens=8,
            params={},
            stream=False,
            key=None,
        )

        async def retrieve() -> None:
            flow = build_flow(settings)
            try:
                await flow.retrieval.search(flow.begin(request))
            finally:
                await flow.aclose()

        with pytest.raises(Unavailable) as unavailable:
            asyncio.run(retrieve())
    assert str(unavailable.value) == f"retriever at http://127.0.0.1:{port} did not answer within 0.5 s"
    error = as_service_error(unavailable.value)
    assert (error.status, error.code) == (503, "backend_unavailable")
