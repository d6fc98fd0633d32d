"""The gocaas daemon: a warm process that forks a child per `gocaas build`/`gocaas test`.

A Python CLI that validates with pydantic and parses with Typer spends ~0.17 s importing before it does any
work; for a build the result cache answers, that is most of its time. Like Bazel's server or Gradle's
daemon, the first command starts a daemon in the background that has everything imported; later commands
connect to it over a private Unix socket, hand over their stdin/stdout/stderr and working directory, and a
forked child of the daemon runs the command — a fresh process per command, so builds share nothing but
the imports. See client.py (stdlib only: it runs before anything heavy is imported) and server.py.
"""
