"""Shared test set-up: one registry home for the whole session, offline.

The built-in chat model is converted from its GGUF once per home (~20 s); `.agentkit-test/`
keeps that home between local runs (CI starts from a clean clone and converts once).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_HOME = Path(os.environ.get("AGENTKIT_TEST_HOME", ROOT / ".agentkit-test" / "home"))


def pytest_configure(config: pytest.Config) -> None:
    os.environ["AGENTKIT_HOME"] = str(TEST_HOME)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.pop("AGENTKIT_DEBUG", None)


@pytest.fixture(scope="session")
def home() -> Path:
    """The session registry home (built-ins converted on first use)."""
    return TEST_HOME
