"""Stage: download and verify the module's dependencies into the shared module cache.

- `go mod download -json`, retried with exponential backoff on transient failures (connection errors, 5xx);
  the go command itself never retries, and a `,` in GOPROXY only moves on after a 404/410.
- The module cache is asked first, with the network off (GOPROXY=off): when it already holds everything the
  proxy is never contacted, so an unreachable proxy costs nothing and the build says it went on offline.
  (The go command never falls back to its cache on its own when a proxy fails.)
- A requirement without a go.sum entry is refused: go would quietly add the line, so go.sum is compared
  before and after and restored.
- `go mod verify` checks what is in the cache against go.sum.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from gocaas.errors import TransientError, UserCodeError
from gocaas.pipeline.stage import BuildContext, Skip
from gocaas.stages.gocmd import SourceResult, go

_REQUIRE = re.compile(r"^\s*require\b", re.MULTILINE)
# Failures that no download can mend: the module's go.sum disagrees with the bytes.
_VERDICTS = frozenset({"checksum_mismatch", "missing_go_sum"})


@dataclass(frozen=True)
class ModulesResult:
    modules: tuple[str, ...]
    offline: bool


def _parse_download(stdout: str) -> list[str]:
    """`go mod download -json` prints a stream of JSON objects, one per module."""
    decoder = json.JSONDecoder()
    modules, pos = [], 0
    text = stdout.strip()
    while pos < len(text):
        obj, end = decoder.raw_decode(text, pos)
        modules.append(f"{obj.get('Path')}@{obj.get('Version')}")
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return modules


class ModulesStage:
    name: ClassVar[str] = "modules"

    def run(self, ctx: BuildContext) -> ModulesResult:
        root = ctx.need(SourceResult).workspace.root
        if not _REQUIRE.search((root / "go.mod").read_text(encoding="utf-8")):
            raise Skip("the module requires no other modules")
        gosum = root / "go.sum"
        before = gosum.read_bytes() if gosum.exists() else None
        settings = ctx.settings

        def download(goproxy: str | None, gosumdb: str | None = None) -> list[str]:
            # No -mod=readonly: `go mod download` writes go.sum regardless, so go.sum is compared instead.
            # Unsandboxed, as is all of this stage: it runs no module code, and it fills the module cache.
            listed = go(
                ctx,
                ["mod", "download", "-json"],
                goflags=(),
                goproxy=goproxy,
                gosumdb=gosumdb,
                sandboxed=False,
            )
            return _parse_download(listed.stdout)

        try:
            modules = download("off")
        except UserCodeError as exc:
            if exc.kind in _VERDICTS:
                self._check_gosum(gosum, before)
                raise
            # something is not in the cache yet: go to the proxy
        else:
            self._check_gosum(gosum, before)
            ctx.log.note(
                f"offline: all {len(modules)} modules came from the module cache; the proxy was not contacted"
            )
            go(ctx, ["mod", "verify"], goproxy="off", sandboxed=False)
            return ModulesResult(tuple(modules), offline=True)

        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(settings.download_attempts),
            wait=wait_exponential(multiplier=settings.retry_initial_delay, max=settings.retry_max_delay),
            before_sleep=lambda state: ctx.log.line(
                f"transient failure (attempt {state.attempt_number} of {settings.download_attempts}); "
                f"retrying in {state.next_action.sleep if state.next_action else 0:.1f}s"
            ),
            reraise=True,
        )
        try:
            modules = retrying(download, None)
        finally:
            self._check_gosum(gosum, before)
        go(ctx, ["mod", "verify"], goproxy="off", sandboxed=False)
        ctx.log.line(f"{len(modules)} modules ready")
        return ModulesResult(tuple(modules), offline=False)

    @staticmethod
    def _check_gosum(gosum: Path, before: bytes | None) -> None:
        """go adds the lines a requirement lacks; refuse instead, and put go.sum back as it was."""
        after = gosum.read_bytes() if gosum.exists() else None
        if after == before:
            return
        old = set((before or b"").decode().splitlines())
        added = [line.split() for line in (after or b"").decode().splitlines() if line and line not in old]
        if before is None:
            gosum.unlink()
        else:
            gosum.write_bytes(before)
        names = sorted(
            {f"{fields[0]}@{fields[1].removesuffix('/go.mod')}" for fields in added if len(fields) > 1}
        )
        raise UserCodeError(
            f"missing go.sum entry for {', '.join(names) or 'some requirements'} "
            "(run `go mod tidy` and commit go.sum)",
            kind="missing_go_sum",
        )
