"""Helpers shared by the test suite: a real GOPROXY built from fixture modules, flaky and dead proxies."""
