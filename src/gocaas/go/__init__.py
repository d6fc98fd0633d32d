"""Everything that knows the go command: versions, toolchains, the environment, running it, its output."""
