"""The stage protocol, the ordered default pipeline and failure classification."""
