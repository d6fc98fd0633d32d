"""`gocaas cache explain`: which inputs differed between two builds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gocaas.errors import BadInput
from gocaas.pipeline.explain import explain
from gocaas.settings import Settings
from gocaas.stages.reuse import INPUTS_FILE
from tests.conftest import BuildFn, copy_example


def test_explains_options_targets_and_files(build: BuildFn, settings: Settings, tmp_path: Path) -> None:
    src = copy_example("multi", tmp_path / "multi")
    first = build(src, version="1.0.0", vet=False)
    same = build(src, version="1.0.0", vet=False)
    assert explain(settings, first.build_id, same.build_id).same_key

    lib = src / "greeting" / "greeting.go"
    lib.write_text(lib.read_text() + "\n// changed\n")
    (src / "greeting" / "new.go").write_text("package greeting\n")
    second = build(src, version="1.0.1", vet=False, targets=("linux/amd64", "linux/arm64"))
    why = explain(settings, first.build_id, second.build_id)
    assert not why.same_key
    assert any("options.version" in item and "1.0.1" in item for item in why.differences["options"])
    assert any("linux/arm64" in item for item in why.differences["targets"])
    assert why.differences["files"] == ["changed greeting/greeting.go", "added greeting/new.go"]
    assert "toolchain" not in why.differences
    assert any(line.startswith("files: changed greeting/greeting.go") for line in why.lines())


@pytest.mark.parametrize("bad", ["nope", "../x", "", "a" * 300])  # 300: "File name too long" before
def test_unknown_build_is_bad_input(settings: Settings, bad: str) -> None:
    with pytest.raises(BadInput):
        explain(settings, bad, bad)


@pytest.mark.parametrize(("content", "words"), [(b'{"go": ', "damaged"), (b"[1, 2]", "not a JSON object"),
                                                (b"\xff\xfe", "damaged"), (None, "damaged")])  # fmt: skip
def test_a_damaged_record_is_bad_input_naming_it(
    fresh_settings: Callable[..., Settings], content: bytes | None, words: str
) -> None:
    settings = fresh_settings()
    record = settings.builds_dir / "20261126T101010-0badf00d" / INPUTS_FILE
    record.parent.mkdir(parents=True)
    if content is None:
        record.mkdir()  # a directory where the file goes
    else:
        record.write_bytes(content)
    with pytest.raises(BadInput, match=f"{INPUTS_FILE} is .*{words}"):
        explain(settings, "20261126T101010-0badf00d", "20261126T101010-0badf00d")
