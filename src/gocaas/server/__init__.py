"""`gocaas serve`: the HTTP API over the queue, the store and the executor. See app.create_app."""

from gocaas.server.app import create_app, worker_count

__all__ = ["create_app", "worker_count"]
