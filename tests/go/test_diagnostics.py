from pathlib import Path

from gocaas.go.diagnostics import MAX_CONTINUATION, parse_diagnostics

ROOT = Path("/builds/x/src")

COMPILER = """# example.com/multi/greeting
greeting/greeting.go:12:9: undefined: nmae
./greeting/greeting.go:14:2: cannot use 1 (untyped int constant) as string value in return statement
/builds/x/src/cmd/greet/main.go:3:1: syntax error: non-declaration statement outside function body
main.go:7:2: too many arguments in call to f
\thave (number, number)
\twant (int)
"""


def test_compiler_output_gives_relative_file_line_column() -> None:
    found = parse_diagnostics(COMPILER, ROOT)
    assert [(d.file, d.line, d.column) for d in found] == [
        ("greeting/greeting.go", 12, 9),
        ("greeting/greeting.go", 14, 2),
        ("cmd/greet/main.go", 3, 1),
        ("main.go", 7, 2),
    ]
    assert found[0].message == "undefined: nmae"
    assert found[0].package == "example.com/multi/greeting"
    assert found[3].message.splitlines() == [
        "too many arguments in call to f",
        "have (number, number)",
        "want (int)",
    ]


def test_relative_to_a_subdirectory_cwd() -> None:
    found = parse_diagnostics("./x.go:1:2: bad\n", ROOT, ROOT / "sub")
    assert found[0].file == "sub/x.go"


def test_vet_output_and_noise() -> None:
    vet = (
        "# example.com/hello\n# [example.com/hello]\n"
        "vet: ./main.go:9:2: fmt.Printf format %d has arg s of wrong type string\nok\n"
    )
    found = parse_diagnostics(vet, ROOT)
    assert len(found) == 1
    assert found[0].file == "main.go" and found[0].line == 9 and found[0].column == 2
    assert found[0].package == "example.com/hello"
    assert parse_diagnostics("go: downloading example.test/greet v1.0.0\n", ROOT) == []


def test_file_outside_the_module_is_kept_as_written() -> None:
    found = parse_diagnostics("/usr/local/go/src/fmt/print.go:10:1: boom\n", ROOT)
    assert found[0].file == "/usr/local/go/src/fmt/print.go"


def test_continuation_lines_are_capped_and_parsing_stays_linear() -> None:
    """A damaged cache made go print a cached binary as an error: 130,000 lines, a third tab-indented.
    Joining each to the message before it was quadratic (21 s here) and kept all of it."""
    junk = "\n".join("\t" + "x" * 100 for _ in range(50_000))
    output = f"/src/m/a.go:1:2: first\n{junk}\n/src/m/b.go:3:4: second\n\thave x\n\twant y"
    first, second = parse_diagnostics(output, Path("/src/m"))
    assert first.message.count("\n") == MAX_CONTINUATION
    assert second.file == "b.go" and second.message == "second\nhave x\nwant y"
