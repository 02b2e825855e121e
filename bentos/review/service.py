"""The review bento: the queue of flagged answers (`answer.flagged` events, consumed from the broker),
a server-rendered web UI for reviewers and a JSON API beside it.

Start it with ``bentoml serve bentos.review.service:Review --host 127.0.0.1 --port 3007``.
UI: ``/login``, ``/reviews``, ``/reviews/{id}`` (`bentos.review.ui`); API: ``GET /v1/reviews``,
``GET /v1/reviews/{id}``, ``POST /v1/reviews/{id}/decision`` (`bentos.review.api`); BentoML adds
/healthz, /readyz, /metrics. Reviewers are keys with the reviewer role (`ragyard keys create --role
reviewer`). The UI's forms post form-encoded bodies, so the kit's JSON-only middleware is not
installed; the JSON API has the kit's handlers (errors in its one shape).
One worker: its consumer and publisher hold one broker connection each; scale with replicas.
"""

from __future__ import annotations

import bentoml
from fastapi import FastAPI

from bentos.review.api import api_routes
from bentos.review.runtime import Runtime
from bentos.review.ui import ui_routes
from ragyard.kit.serving import install_handlers
from ragyard.settings import ReviewBentoSettings

runtime = Runtime(ReviewBentoSettings())
api_app = FastAPI(title="ragyard review", docs_url=None, redoc_url=None)
api_app.state.runtime = runtime
api_app.include_router(api_routes(runtime))
install_handlers(api_app)
ui_app = FastAPI(title="ragyard review UI", docs_url=None, redoc_url=None, openapi_url=None)
ui_app.include_router(ui_routes(runtime))


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 60, "max_concurrency": 64}, workers=1)
@bentoml.asgi_app(api_app, path="/v1")
@bentoml.asgi_app(ui_app, path="/")
class Review:
    @bentoml.on_startup
    async def start(self) -> None:
        runtime.start()

    @bentoml.on_shutdown
    async def stop(self) -> None:
        await runtime.close()
