"""langchain-tests' Embeddings suites against the built-in all-MiniLM-L6-v2."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from tests.standard_capabilities import LocalEmbeddingsParams

pytestmark = pytest.mark.integration


class TestLocalEmbeddingsUnit(LocalEmbeddingsParams, EmbeddingsUnitTests):
    pass


class TestLocalEmbeddingsIntegration(LocalEmbeddingsParams, EmbeddingsIntegrationTests):
    pass
