"""Earshot's HTTP layer: OpenAI-shaped routes, request parsing, errors and renderers."""
