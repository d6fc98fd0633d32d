"""The GOCACHEPROG value that starts `gocaas cacheprog` fast.

The go command starts the program once per go invocation and waits for its first line, so its start-up
is paid by every go command. `cacheprog_argv` runs the launcher next to this file with `python -I -S`: no
site-packages scan, no .pth files, no environment variables (pip's and the sandbox's .pth files alone can
cost 20-40 ms); the launcher puts this package's own import root on sys.path. `python -m gocaas.cache.prog`
works too, only slower to start.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch.py")  # noqa: PTH100, PTH118, PTH120


def cacheprog_argv(
    cache_dir: str | os.PathLike[str],
    *,
    namespace: str = "default",
    read_only: bool = False,
    python: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of the GOCACHEPROG program over the store at cache_dir (pass it explicitly:
    gocaas gives go commands a per-build HOME, so the program's own default would be wrong)."""
    argv = [python or sys.executable, "-I", "-S", LAUNCHER, "--dir", os.fspath(cache_dir)]
    argv += ["--namespace", namespace]
    if read_only:
        argv.append("--read-only")
    return [*argv, *extra]


def go_quote(args: Sequence[str]) -> str:
    """Join args so that the go command's quoted.Split gives them back (quotes, no escapes)."""
    out = []
    for arg in args:
        space = any(c in arg for c in " \t\r\n")
        single, double = "'" in arg, '"' in arg
        if not arg:
            out.append("''")
        elif not (space or single or double):
            out.append(arg)
        elif not single:
            out.append(f"'{arg}'")
        elif not double:
            out.append(f'"{arg}"')
        else:
            raise ValueError(f"cannot quote {arg!r} for GOCACHEPROG: it holds both kinds of quote")
    return " ".join(out)


def cacheprog_command(
    cache_dir: str | os.PathLike[str],
    *,
    namespace: str = "default",
    read_only: bool = False,
    python: str | None = None,
    extra: Sequence[str] = (),
) -> str:
    """The GOCACHEPROG environment value for the go command (see cacheprog_argv)."""
    return go_quote(
        cacheprog_argv(cache_dir, namespace=namespace, read_only=read_only, python=python, extra=extra)
    )
