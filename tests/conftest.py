"""Shared test fixtures. The real captured tool outputs live in ../shared/reference/captures
(beside the checkout, as in CI); they are read from there, never copied."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CAPTURES = SHARED / "reference" / "captures"


@pytest.fixture(scope="session")
def captures() -> Path:
    assert CAPTURES.is_dir(), f"real captures not found at {CAPTURES} (../shared beside the repo)"
    return CAPTURES
