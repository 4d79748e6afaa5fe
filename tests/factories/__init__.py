"""Offline test factories (synthetic models and fixtures)."""
