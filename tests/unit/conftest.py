"""Fixtures for tests/unit: the router fixtures live in routerkit (a uniquely named module, so
that test files can import its helpers whatever other conftest modules the session loads)."""

from routerkit import clock, r, router

__all__ = ["clock", "r", "router"]
