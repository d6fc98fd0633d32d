"""A client of `gocaas serve`: submit a module (a packed directory, an archive or a git URL), watch the
build, follow its log, download its artifacts with their checksums verified. Errors are gocaas errors."""

from gocaas.client.api import GocaasClient, ServerBusy
from gocaas.client.models import Artifact, Build, BuildOptions, Failure, LogEnd, Stage, Submitted
from gocaas.client.pack import Packed, pack_directory
from gocaas.client.sse import LogStream

__all__ = [
    "Artifact",
    "Build",
    "BuildOptions",
    "Failure",
    "GocaasClient",
    "LogEnd",
    "LogStream",
    "Packed",
    "ServerBusy",
    "Stage",
    "Submitted",
    "pack_directory",
]
