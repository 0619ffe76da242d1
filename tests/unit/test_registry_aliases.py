"""Aliases on a registry of fake entries: promote / rollback / history, the card records they leave,
refusals, concurrent writers, and resolution of `model: ALIAS` at load time. No weights are loaded."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from agentkit.cli.app import main
from agentkit.errors import BadInputError, EntryExistsError, UnknownModelError
from agentkit.registry import EvaluationEvent, Registry, SourceInfo, Stage

ALIAS = "agent-default"


def _writer(kind: str = "base", task: str = "causal_lm", base: str | None = None):  # noqa: ANN202
    def write(stage: Path) -> dict:
        # Registry bookkeeping hashes *.safetensors files; nothing here ever parses them.
        (stage / "model.safetensors").write_bytes(f"fake {kind} {task}".encode())
        return {"kind": kind, "task": task, "base": base, "source": SourceInfo(type="test", ref="fake")}

    return write


def _make(root: Path) -> Registry:
    registry = Registry(root)
    registry.create_entry("tiny-base", _writer())
    registry.create_entry("tiny-lora", _writer("adapter", base="tiny-base"))
    registry.create_entry("tiny-lora2", _writer("adapter", base="tiny-base"))
    registry.create_entry("tiny-embed", _writer(task="embedding"))
    return registry


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return _make(tmp_path / "home")


def _events(registry: Registry, entry_id: str) -> list[tuple[str, str | None]]:
    return [(r.event.value, r.alias) for r in registry.card(entry_id).evaluations]


# ---- promote / rollback / history --------------------------------------------------------------
def test_promote_points_alias_and_records_why_on_the_card(registry: Registry) -> None:
    assert registry.promote("tiny-lora", ALIAS, evaluation={"pass_rate": 0.8}, beat={"pass_rate": 0.5}) is None
    assert registry.aliases()[ALIAS]["target"] == "tiny-lora" and registry.aliases()[ALIAS]["history"] == []
    card = registry.card("tiny-lora")
    assert card.stage is Stage.CHAMPION
    (record,) = card.evaluations
    assert record.event is EvaluationEvent.PROMOTED and record.alias == ALIAS
    assert record.evaluation == {"pass_rate": 0.8} and record.beat == {"pass_rate": 0.5} and record.time.tzinfo
    on_disk = json.loads((registry.root / "aliases.json").read_text())
    assert on_disk["aliases"][ALIAS]["target"] == "tiny-lora"


def test_promote_then_rollback_walks_the_history(registry: Registry) -> None:
    registry.promote("tiny-lora", ALIAS)
    assert registry.promote("tiny-lora2", ALIAS, evaluation={"pass_rate": 0.9}) == "tiny-lora"
    assert registry.promote("tiny-base", ALIAS) == "tiny-lora2"
    history = registry.aliases()[ALIAS]["history"]
    assert [h["target"] for h in history] == ["tiny-lora", "tiny-lora2"]
    assert all(h["since"] <= h["until"] for h in history)
    assert registry.card("tiny-lora").stage is Stage.RETIRED  # replaced: no alias serves it now

    assert registry.rollback(ALIAS) == "tiny-lora2"
    assert registry.resolve(ALIAS) == "tiny-lora2"
    assert registry.card("tiny-lora2").stage is Stage.CHAMPION
    assert registry.card("tiny-base").stage is Stage.RETIRED
    assert _events(registry, "tiny-base") == [("promoted", ALIAS), ("rolled_back", ALIAS)]
    assert _events(registry, "tiny-lora2") == [("promoted", ALIAS), ("restored", ALIAS)]

    assert registry.rollback(ALIAS) == "tiny-lora"
    with pytest.raises(BadInputError, match="no earlier target") as info:
        registry.rollback(ALIAS)
    assert "agentkit models promote ID --alias agent-default" in str(info.value)
    assert registry.resolve(ALIAS) == "tiny-lora"  # a refused rollback changes nothing


def test_promoting_the_current_target_again_keeps_the_history(registry: Registry) -> None:
    registry.promote("tiny-lora", ALIAS)
    assert registry.promote("tiny-lora", ALIAS, evaluation={"pass_rate": 0.7}) == "tiny-lora"
    assert registry.aliases()[ALIAS]["history"] == []
    assert _events(registry, "tiny-lora") == [("promoted", ALIAS), ("promoted", ALIAS)]


def test_an_entry_served_by_two_aliases_stays_champion_when_one_moves(registry: Registry) -> None:
    registry.promote("tiny-lora", ALIAS)
    registry.promote("tiny-lora", "agent-stable")
    registry.promote("tiny-lora2", ALIAS)
    assert registry.card("tiny-lora").stage is Stage.CHAMPION


def test_mark_candidate_records_an_evaluation_that_did_not_promote(registry: Registry) -> None:
    card = registry.mark_candidate("tiny-lora2", {"pass_rate": 0.4})
    assert card.stage is Stage.CANDIDATE and card.evaluations[-1].evaluation == {"pass_rate": 0.4}
    assert card.evaluations[-1].event is EvaluationEvent.CANDIDATE and card.evaluations[-1].alias is None
    registry.promote("tiny-lora", ALIAS)
    assert registry.mark_candidate("tiny-lora").stage is Stage.CHAMPION  # served: a record, not a demotion


# ---- refusals ------------------------------------------------------------------------------------
def test_promote_refuses_an_unknown_id_and_lists_ids_and_aliases(registry: Registry) -> None:
    registry.promote("tiny-lora", ALIAS)
    with pytest.raises(UnknownModelError) as info:
        registry.promote("tiny-lroa", "other")
    message = str(info.value)
    assert "'tiny-lroa'" in message and "tiny-lora2" in message and "agent-default -> tiny-lora" in message
    assert set(registry.aliases()) == {ALIAS}


@pytest.mark.parametrize("alias", ["tiny-base", "smollm2-135m-instruct"])
def test_promote_refuses_an_alias_that_is_an_entry_or_builtin_id(registry: Registry, alias: str) -> None:
    with pytest.raises(BadInputError, match="must not hide an id"):
        registry.promote("tiny-lora", alias)
    assert registry.aliases() == {}


@pytest.mark.parametrize("alias", ["Agent", "a/b", "../up", "x\n", ""])
def test_promote_refuses_an_alias_that_is_no_valid_id(registry: Registry, alias: str) -> None:
    with pytest.raises(BadInputError, match="Invalid alias"):
        registry.promote("tiny-lora", alias)


def test_promote_refuses_an_entry_that_cannot_chat(registry: Registry) -> None:
    with pytest.raises(BadInputError, match="embedding base; an alias serves chat models") as info:
        registry.promote("tiny-embed", ALIAS)
    assert "causal_lm" in str(info.value)
    assert registry.card("tiny-embed").stage is None and registry.aliases() == {}


def test_promote_refuses_an_evaluation_that_is_not_json(registry: Registry) -> None:
    with pytest.raises(BadInputError, match="`evaluation` cannot be stored as JSON"):
        registry.promote("tiny-lora", ALIAS, evaluation={"when": object()})
    assert registry.aliases() == {} and registry.card("tiny-lora").evaluations == []


def test_rollback_of_an_unknown_alias_names_the_aliases(registry: Registry) -> None:
    registry.promote("tiny-lora", ALIAS)
    with pytest.raises(BadInputError, match="No alias 'nope'.*aliases are: agent-default"):
        registry.rollback("nope")


def test_rm_is_refused_while_an_alias_points_at_the_entry(registry: Registry) -> None:
    registry.promote("tiny-lora", ALIAS)
    with pytest.raises(BadInputError) as info:
        registry.remove("tiny-lora")
    message = str(info.value)
    assert "'agent-default'" in message and "agentkit models rollback agent-default" in message
    assert "tiny-lora" in registry.ids()
    with pytest.raises(BadInputError, match="is an alias"):
        registry.remove(ALIAS)
    # Once the alias moves on, the old target may go; a rollback to it then says why it cannot.
    registry.promote("tiny-lora2", ALIAS)
    registry.remove("tiny-lora")
    with pytest.raises(BadInputError, match="'tiny-lora', which was removed"):
        registry.rollback(ALIAS)
    assert registry.resolve(ALIAS) == "tiny-lora2"


def test_an_entry_cannot_take_the_name_of_an_alias(registry: Registry) -> None:
    registry.promote("tiny-lora", ALIAS)
    with pytest.raises(EntryExistsError, match="taken by an alias"):
        registry.create_entry(ALIAS, _writer())


# ---- files on disk ---------------------------------------------------------------------------------
def test_an_old_card_without_the_new_fields_still_loads(registry: Registry) -> None:
    card_file = registry.entry_dir("tiny-lora") / "card.json"
    old = json.loads(card_file.read_text())
    del old["stage"], old["evaluations"]  # as written before aliases existed
    card_file.write_text(json.dumps(old))
    card = registry.card("tiny-lora")
    assert card.stage is None and card.evaluations == []
    registry.promote("tiny-lora", ALIAS)
    assert json.loads(card_file.read_text())["stage"] == "champion"


def _promote_many(root: str, alias: str, rounds: int) -> None:
    registry = Registry(root)
    for i in range(rounds):
        registry.promote(("tiny-lora", "tiny-lora2")[i % 2], alias, evaluation={"round": i})


def test_concurrent_promotes_from_two_processes_lose_nothing(tmp_path: Path) -> None:
    registry = _make(tmp_path / "home")
    rounds = 6
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_promote_many, args=(str(registry.root), alias, rounds))
             for alias in ("a-one", "a-two")]  # fmt: skip
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    data = json.loads((registry.root / "aliases.json").read_text())  # valid JSON, both aliases in it
    for alias in ("a-one", "a-two"):
        # Each process alternates targets, so each of its promotes but the first pushed one history item.
        assert data["aliases"][alias]["target"] == "tiny-lora2"
        assert len(data["aliases"][alias]["history"]) == rounds - 1
    # Every card record landed: each process promoted each entry rounds/2 times.
    for entry in ("tiny-lora", "tiny-lora2"):
        assert len(registry.card(entry).evaluations) == rounds
    assert not list(registry.root.glob(".aliases.json.*.tmp"))


# ---- resolution ----------------------------------------------------------------------------------------
def test_resolve_alias_entry_and_unknown(registry: Registry) -> None:
    registry.promote("tiny-lora", ALIAS)
    assert registry.resolve(ALIAS) == "tiny-lora"
    assert registry.resolve("tiny-base") == "tiny-base"
    assert registry.resolve("smollm2-135m-instruct") == "smollm2-135m-instruct"  # built-in: not converted
    with pytest.raises(UnknownModelError, match="aliases: agent-default -> tiny-lora"):
        registry.resolve("nope")
    with pytest.raises(UnknownModelError, match="aliases: agent-default -> tiny-lora"):
        registry.card("nope")


def test_alias_of_an_adapter_runs_as_base_plus_adapter(registry: Registry) -> None:
    registry.promote("tiny-lora", ALIAS)
    assert registry.resolve_chat(ALIAS) == ("tiny-base", "tiny-lora")
    assert registry.resolve_chat("tiny-base", ALIAS) == ("tiny-base", "tiny-lora")
    assert registry.resolve_chat("tiny-base", "tiny-lora2") == ("tiny-base", "tiny-lora2")  # ids pass through
    with pytest.raises(BadInputError, match="cannot take adapter 'tiny-lora2' too"):
        registry.resolve_chat(ALIAS, "tiny-lora2")
    registry.promote("tiny-base", "base-alias")
    assert registry.resolve_chat("base-alias") == ("tiny-base", None)
    with pytest.raises(BadInputError, match="not an adapter"):
        registry.resolve_chat("tiny-base", "base-alias")


def test_load_chat_model_resolves_the_alias_at_each_load(registry: Registry) -> None:
    from agentkit.models.provider import ModelSpec, load_chat_model

    spec = ModelSpec(model=ALIAS, options={"home": str(registry.root)})
    registry.promote("tiny-lora", ALIAS)
    first = load_chat_model(spec)  # LocalChatModel loads lazily: no weights are read here
    assert (first.model, first.adapter) == ("tiny-base", "tiny-lora")
    registry.promote("tiny-base", ALIAS)
    second = load_chat_model(spec)
    assert (second.model, second.adapter) == ("tiny-base", None)
    assert (first.model, first.adapter) == ("tiny-base", "tiny-lora")  # a loaded model keeps its target


def test_goal_yaml_model_alias_runs_the_current_target(registry: Registry, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from agentkit import Agent

    monkeypatch.setenv("AGENTKIT_HOME", str(registry.root))
    goal = tmp_path / "goal.yaml"
    goal.write_text(f"goals:\n  - Say hi.\nmodel: {ALIAS}\n", encoding="utf-8")
    registry.promote("tiny-lora", ALIAS)
    agent = Agent.from_yaml(goal, runs_dir=tmp_path / "runs")
    chat_model = agent._chat_model()  # resolved and checked at run time, before any weights load
    assert (chat_model.model, chat_model.adapter) == ("tiny-base", "tiny-lora")
    registry.promote("tiny-lora2", ALIAS)
    assert agent._chat_model().adapter == "tiny-lora2"  # the next run of the same agent sees the promote


# ---- CLI ---------------------------------------------------------------------------------------------------
def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Fix:" in lines[0], lines
    return lines[0]


def test_cli_promote_aliases_rollback(registry: Registry, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("AGENTKIT_HOME", str(registry.root))
    assert main(["models", "promote", "tiny-lora", "--alias", ALIAS, "--evaluation", '{"pass_rate": 0.8}']) == 0
    assert capsys.readouterr().out.strip() == "agent-default -> tiny-lora (new alias)"
    assert main(["models", "promote", "tiny-lora2", "--alias", ALIAS]) == 0
    assert "was tiny-lora" in capsys.readouterr().out

    assert main(["models", "aliases", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown[ALIAS]["target"] == "tiny-lora2"
    assert [h["target"] for h in shown[ALIAS]["history"]] == ["tiny-lora"]
    assert main(["models", "aliases"]) == 0
    assert "agent-default -> tiny-lora2" in capsys.readouterr().out

    assert main(["models", "list"]) == 0
    assert "alias agent-default -> tiny-lora2" in capsys.readouterr().out.splitlines()
    assert main(["models", "list", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["tiny-lora2"]["aliases"] == [ALIAS] and rows["tiny-lora2"]["stage"] == "champion"

    assert main(["models", "show", "tiny-lora"]) == 0
    out = capsys.readouterr().out
    assert "stage: retired" in out and 'promoted agent-default evaluation={"pass_rate": 0.8}' in out

    assert main(["models", "rollback", ALIAS]) == 0
    assert capsys.readouterr().out.strip() == "agent-default -> tiny-lora (was tiny-lora2)"
    assert main(["models", "show", ALIAS, "--json"]) == 0  # an alias shows its target's card
    assert json.loads(capsys.readouterr().out)["id"] == "tiny-lora"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["models", "promote", "tiny-lora", "--alias", "Bad/Alias"], "Invalid alias 'Bad/Alias'"),
        (["models", "promote", "tiny-lora", "--alias", "tiny-base"], "must not hide an id"),
        (["models", "promote", "tiny-embed", "--alias", ALIAS], "an alias serves chat models"),
        (["models", "promote", "tiny-lora", "--alias", ALIAS, "--evaluation", "[1]"], "must be a JSON object"),
        (["models", "rollback", ALIAS], "no earlier target"),
        (["models", "rollback", "nope"], "No alias 'nope'"),
        (["models", "rm", "tiny-base"], "is the base of adapters"),
        (["models", "rm", "tiny-lora"], "served by alias 'agent-default'"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(registry: Registry, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> None:  # fmt: skip
    monkeypatch.setenv("AGENTKIT_HOME", str(registry.root))
    registry.promote("tiny-lora", ALIAS)
    assert main(argv) == 2
    assert expected in _error_line(capsys)
