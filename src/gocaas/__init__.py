"""gocaas: a build service for Go."""

__version__ = "0.1.0"
