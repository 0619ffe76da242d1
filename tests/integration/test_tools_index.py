"""search_index and ask_index on a small real index (minilm-l6 embeddings, four short files) and the
built-in chat model; an index the goal does not allow is refused when the tools are built."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkit.errors import BadInputError
from agentkit.indexes import create_index
from agentkit.models import LocalChatModel
from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from agentkit.tools import ToolContext, build_tools, invoke_tool

pytestmark = pytest.mark.integration

ANIMALS = {
    "otters.md": "# Otters\n\nOtters live in rivers and eat fish and crabs.",
    "badgers.md": "# Badgers\n\nBadgers dig setts in woods and eat earthworms.",
    "hedgehogs.md": "# Hedgehogs\n\nHedgehogs sleep through the winter under hedges.",
    "foxes.md": "# Foxes\n\nFoxes hunt rabbits at night in fields.",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Path:
    root = tmp_path_factory.mktemp("tool-index")
    home = root / "home"
    Registry(home).create_entry("minilm-l6", lambda stage: copy_hf_folder(registry.path("minilm-l6"), stage, link=True))
    corpus = root / "corpus"
    corpus.mkdir()
    for name, text in ANIMALS.items():
        (corpus / name).write_text(text)
    with create_index("zoo", splitter={"chunk_size": 200, "chunk_overlap": 0}, home=home) as index:
        index.add([corpus])
    with create_index("other", home=home):
        pass
    return home


@pytest.fixture(scope="module")
def tools(home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    context = ToolContext(
        workspace=tmp_path_factory.mktemp("ws"), home=home, indexes=("zoo",),
        model=LocalChatModel(max_new_tokens=80),  # the built-in, from the session registry
    )  # fmt: skip
    return {t.name: t for t in build_tools(["search_index", "ask_index"], context)}


def test_search_index_returns_cited_passages(tools: dict) -> None:
    out = invoke_tool(tools["search_index"], {"query": "Where do otters live?", "k": 2}, timeout_s=120)
    assert out.ok, out.error
    lines = out.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[otters.md#0] # Otters Otters live in rivers")


def test_search_index_bad_k_is_an_observation(tools: dict) -> None:
    out = invoke_tool(tools["search_index"], {"query": "otters", "k": 99}, timeout_s=60)
    assert not out.ok and "k=99" in out.error


def test_ask_index_answers_with_a_citation_of_a_retrieved_passage(tools: dict) -> None:
    out = invoke_tool(tools["ask_index"], {"question": "What do otters eat?"}, timeout_s=300)
    assert out.ok, out.error
    assert out.output.rstrip().endswith("]") and "[otters.md#0]" in out.output


def test_index_the_goal_does_not_allow_is_refused(home: Path, tmp_path: Path) -> None:
    context = ToolContext(workspace=tmp_path, home=home, indexes=("zoo",))
    with pytest.raises(BadInputError, match="index 'other', which the goal does not allow") as err:
        build_tools([{"name": "search_index", "index": "other"}], context)
    assert "indexes:" in err.value.fix
    with pytest.raises(BadInputError, match="needs an index: the goal allows 0"):
        build_tools(["ask_index"], ToolContext(workspace=tmp_path, home=home))
    with pytest.raises(BadInputError, match="No index 'gone'"):
        build_tools(["search_index"], ToolContext(workspace=tmp_path, home=home, indexes=("gone",)))
