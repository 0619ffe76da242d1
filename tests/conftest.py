"""Shared test set-up: one registry home for the whole session, offline.

The built-in chat model is converted from its GGUF once per home (~20 s); `.agentkit-test/`
keeps that home between local runs (CI starts from a clean clone and converts once). Tests that
need a registry of their own share its bases read-only, hard-linked (`copy_hf_folder(link=True)`),
rather than a 540 MB copy each.
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
    # Disk: one checkpoint per tuning run (a full fine-tune's is ~1.6 GB with its optimizer state),
    # in this process and in the `agentkit tune` subprocesses that inherit it. Resume still works:
    # the trainer deletes the older checkpoint only once the newer one is saved whole.
    os.environ["AGENTKIT_SAVE_TOTAL_LIMIT"] = "1"


@pytest.fixture(scope="session")
def home() -> Path:
    """The session registry home (built-ins converted on first use)."""
    return TEST_HOME
