"""Integration fixtures: the real built-in models, plus a second registered chat model.

`smollm2-copy` is an HF-folder import of the converted built-in, so model override and
`models import` run on real weights.
"""

from __future__ import annotations

import pytest

from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder

SECOND_MODEL = "smollm2-copy"


def ensure_second_model() -> str:
    registry = Registry.default()
    source = registry.path("smollm2-135m-instruct")
    registry.create_entry(SECOND_MODEL, lambda stage: copy_hf_folder(source, stage, link=True), exist_ok=True)
    return SECOND_MODEL


@pytest.fixture(scope="session")
def registry() -> Registry:
    registry = Registry.default()
    registry.ensure("smollm2-135m-instruct")
    registry.ensure("minilm-l6")
    return registry
