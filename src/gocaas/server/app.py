"""The FastAPI application: `create_app(settings)` wires the store, the executor, metrics and routes.

    app = create_app(settings)               # runs the local executor with the app (lifespan)
    uvicorn.run(app, host="127.0.0.1", port=8080)

The API never runs go: it validates requests into BuildSpecs, queues them in the store, and serves back
what the executor recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from gocaas.executor import load_executor
from gocaas.server.auth import ServiceDep
from gocaas.server.bodylimit import BodyLimit
from gocaas.server.errors import install_error_handlers
from gocaas.server.notify import Notifier
from gocaas.server.retention import Pruner
from gocaas.server.routes import builds, files
from gocaas.server.service import Service
from gocaas.settings import Settings
from gocaas.store.store import open_store

__all__ = ["create_app", "worker_count", "worker_settings"]

log = structlog.get_logger("gocaas.server")


def worker_count(settings: Settings) -> int:
    """Builds at once: each go command already uses every core, so one per two cores (at least one)."""
    return settings.server_workers or max(1, settings.effective_cores() // 2)


def worker_settings(settings: Settings, workers: int) -> Settings:
    """The settings the workers build with: unless build_memory_limit is set, the default memory limit
    (3/4 of the machine's) shared among the builds that run at once, so that none can crowd the others out."""
    if settings.build_memory_limit is not None or workers <= 1:
        return settings
    return settings.model_copy(update={"build_memory_limit": settings.effective_build_memory_limit(workers)})


def create_app(settings: Settings, *, workers: int | None = None, run_executor: bool = True) -> FastAPI:
    notifier = Notifier()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        notifier.bind(asyncio.get_running_loop())
        store = await run_in_threadpool(open_store, settings.db_url)
        service = Service(settings, store, None, notifier)
        if run_executor:
            count = workers or worker_count(settings)
            executor = load_executor(
                settings.server_executor,
                worker_settings(settings, count),
                store,
                workers=count,
                observer=service.metrics,
            )
            service.executor = executor
            await run_in_threadpool(executor.start)
        app.state.service = service
        pruner = Pruner(settings, service.builds)
        pruner.start()
        log.info("server ready", database=store.url, workers=service.executor_state().workers)
        try:
            yield
        finally:
            pruner.stop()
            if service.executor is not None:
                await run_in_threadpool(service.executor.stop)
            store.close()

    app = FastAPI(
        title="gocaas",
        summary="A build service for Go: queue builds, follow them, download checksummed artifacts.",
        version="1",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit)
    app.include_router(builds.router)
    app.include_router(files.router)

    @app.get("/healthz", tags=["operations"], summary="The process is up")
    @app.head("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="The database answers and the executor runs")
    def readyz(service: ServiceDep, response: Response) -> dict[str, object]:
        problems: list[str] = []
        try:
            with service.store.session(write=False) as session:
                session.execute(text("SELECT 1"))
        except Exception as e:
            problems.append(f"database: {e}")
        state = service.executor_state()
        if service.executor is not None and not state.alive:
            problems.append("executor: not running")
        if problems:
            response.status_code = 503
        return {
            "status": "ok" if not problems else "unavailable",
            "problems": problems,
            "workers": state.workers,
            "busy": state.busy,
        }

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    def metrics(service: ServiceDep) -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
