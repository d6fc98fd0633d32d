"""The command line: Typer commands and Rich views over the same pipeline."""
