"""Fixtures shared by every test module."""

from tests.smtp_server import smtp_sink

__all__ = ["smtp_sink"]
