import pytest

from gocaas.go.version import GoVersion


@pytest.mark.parametrize("text", ["1.25", "1.25.3", "go1.26rc1", "go1.21.13", "1.22beta2"])
def test_parse_round_trips(text: str) -> None:
    assert str(GoVersion.parse(text)) == text.removeprefix("go")


@pytest.mark.parametrize(
    "text", ["", "1", "2.0", "1.x", "go1.25.3 -toolexec=x", "1.25.3;rm", "v1.25", "1.25.3.4"]
)
def test_rejects_what_is_not_a_version(text: str) -> None:
    with pytest.raises(ValueError, match="not a Go version"):
        GoVersion.parse(text)


def test_ordering_language_prerelease_release() -> None:
    order = ["1.24.9", "1.25", "1.25beta1", "1.25rc1", "1.25rc2", "1.25.0", "1.25.3", "1.26.0"]
    versions = [GoVersion.parse(v) for v in order]
    assert sorted(reversed(versions)) == versions


def test_satisfies_is_a_minimum() -> None:
    assert GoVersion.parse("1.26.8").satisfies(GoVersion.parse("1.21"))
    assert GoVersion.parse("1.25.0").satisfies(GoVersion.parse("1.25"))
    assert not GoVersion.parse("1.24.11").satisfies(GoVersion.parse("1.25"))
    assert not GoVersion.parse("1.25.2").satisfies(GoVersion.parse("1.25.3"))
