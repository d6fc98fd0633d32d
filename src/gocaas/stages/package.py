"""Stage: the artifacts. Binaries as `<command>_<goos>_<goarch>[.exe]` in the output directory, optional
per-target archives, and `sha256sums.txt` in GoReleaser's checksums format."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from gocaas.atomic import replacing
from gocaas.go.gomod import module_path
from gocaas.pipeline.stage import BuildContext, Skip
from gocaas.report.archives import write_tar_gz, write_zip
from gocaas.report.checksums import sha256_file, write_checksums
from gocaas.report.model import Artifact
from gocaas.spec import ArchiveFormat, Target
from gocaas.stages.gocmd import SourceResult
from gocaas.stages.results import BuildResult, PackageResult

CHECKSUMS_NAME = "sha256sums.txt"


def _artifact(path: Path, target: Target | None, kind: str) -> Artifact:
    return Artifact(
        name=path.name,
        path=str(path),
        goos=target.goos if target else None,
        goarch=target.goarch if target else None,
        kind=kind,
        sha256=sha256_file(path),
        size=path.stat().st_size,
    )


def _place(src: Path, dest: Path) -> None:
    """Move the build's private copy into place (a rename when on one filesystem); otherwise copy next to
    the destination, then rename, so that a reader never sees half a binary."""
    src.chmod(0o755)
    try:
        src.replace(dest)
        return
    except OSError:
        pass
    with replacing(dest) as tmp:
        shutil.copyfile(src, tmp)
        tmp.chmod(0o755)


class PackageStage:
    name: ClassVar[str] = "package"

    def run(self, ctx: BuildContext) -> PackageResult:
        built = ctx.need(BuildResult)
        if not any(built.binaries.values()):
            raise Skip("the module has no main package: nothing to package")
        out = ctx.out_dir
        out.mkdir(parents=True, exist_ok=True)
        project = module_path(ctx.need(SourceResult).workspace.root).rstrip("/").rsplit("/", 1)[-1]
        archive_format = ctx.spec.options.archives
        artifacts: list[Artifact] = []
        for target, binaries in built.binaries.items():
            placed = []
            for binary in binaries:
                command = binary.name.removesuffix(".exe")
                dest = out / f"{command}_{target.goos}_{target.goarch}{target.exe_suffix}"
                _place(binary, dest)
                placed.append((binary.name, dest))
                artifacts.append(_artifact(dest, target, "binary"))
            if archive_format is not None and binaries:
                version = f"_{built.version_stamp}" if built.version_stamp else ""
                stem = f"{project}{version}_{target.goos}_{target.goarch}"
                if archive_format is ArchiveFormat.ZIP:
                    archive = write_zip(out / f"{stem}.zip", placed)
                else:
                    archive = write_tar_gz(out / f"{stem}.tar.gz", placed)
                artifacts.append(_artifact(archive, target, "archive"))
        checksums = write_checksums(out / CHECKSUMS_NAME, [(a.name, a.sha256) for a in artifacts])
        for artifact in artifacts:
            ctx.log.line(f"{artifact.sha256}  {artifact.name} ({artifact.size} bytes)")
        return PackageResult(tuple(artifacts), checksums)
