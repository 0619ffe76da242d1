"""bench/agent_goals: every goal file loads, is one sentence with checks, fails on its untouched seed
workspace and passes on a correct solution; the train / held-out / confirm split is disjoint and balanced."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from agentkit.agents.checks import run_checks
from agentkit.agents.spec import GoalSpec, load_goal

BENCH = Path(__file__).resolve().parents[2] / "bench"
GOALS = BENCH / "agent_goals"
SPLITS = ("train", "heldout", "confirm")
BASE_TOOLS = ["read_file", "write_file", "list_files", "calculator"]
INDEX = "agent-goals-facts"


def _goal_files() -> list[Path]:
    return sorted(f for split in SPLITS for f in (GOALS / split).glob("*.yaml"))


def _numbers(path: Path) -> list[int]:
    return [int(word) for word in _text(path).split()]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _file_where(workspace: Path, test: Callable[[Path], bool]) -> str:
    """The name of the one top-level file of `workspace` that passes `test`."""
    (name,) = [p.name for p in workspace.iterdir() if p.is_file() and test(p)]
    return name


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))  # {"total":158}: no spaces for a check to lean on


def _product(*files: str) -> Callable[[Path], str]:
    return lambda ws: str(math.prod(_numbers(ws / f)[0] for f in files))


def _joined(*files: str) -> Callable[[Path], str]:
    return lambda ws: " ".join(_text(ws / f).strip() for f in files)


def _field(path: Path, key: str) -> str:
    """The value of `key: value` in a record file (book.txt, person.txt)."""
    lines = _text(path).splitlines()
    return next(line.split(":", 1)[1].strip() for line in lines if line.lower().startswith(key + ":"))


# A correct solution of every goal: {goal: {output file: its text}}. Where the answer follows from the
# seed files it is computed from them (a callable of the workspace), so the checks are shown to agree
# with the inputs, not only with a number typed twice.
Text = str | Callable[[Path], str]
SOLUTIONS: dict[str, dict[str, Text]] = {
    # held-out
    "calc_add": {"sum.txt": str(1234 + 5678)},
    "calc_area": {"area.txt": str(12 * 7)},
    "calc_mult": {"answer.txt": str(23 * 19)},
    "calc_parens": {"result.txt": str((3 + 4) * 5)},
    "calc_tip": {"tip.txt": str(80 * 0.15)},
    "write_hello": {"hello.txt": "hello world"},
    "write_two": {"one.txt": "alpha", "two.txt": "beta"},
    "write_year": {"year.txt": "2024"},
    "read_city": {"answer.txt": lambda ws: _text(ws / "city.txt").strip()},
    "read_code": {"answer.txt": lambda ws: re.findall(r"\d+", _text(ws / "code.txt"))[0]},
    "price_times_three": {"total.txt": lambda ws: str(_numbers(ws / "price.txt")[0] * 3)},
    "find_csv": {"found.txt": lambda ws: _file_where(ws, lambda p: p.suffix == ".csv")},
    "sum_two_files": {"sum.txt": lambda ws: str(_numbers(ws / "a.txt")[0] + _numbers(ws / "b.txt")[0])},
    "reverse_words": {"reversed.txt": lambda ws: " ".join(_text(ws / "words.txt").split()[::-1])},
    "first_line": {"first.txt": lambda ws: _text(ws / "log.txt").splitlines()[0]},
    "find_invoice": {"found.txt": lambda ws: _file_where(ws, lambda p: "invoice" in _text(p))},
    "json_book": {"book.json": lambda ws: _compact({"title": _field(ws / "book.txt", "title"),
                                                      "year": int(_field(ws / "book.txt", "year"))})},
    "count_words": {"count.txt": lambda ws: str(len(_text(ws / "sentence.txt").split()))},
    "index_city": {"city.txt": "Valparaiso"},
    "replan_totals": {"double.txt": lambda ws: str(2 * _numbers(ws / "sales" / "totals.txt")[0])},
    # train
    "calc_div": {"quotient.txt": str(1176 / 14)},
    "calc_minutes": {"minutes.txt": str(7 * 60)},
    "calc_pow": {"power.txt": str(2**10)},
    "calc_sub": {"diff.txt": str(1000 - 357)},
    "note_exists": {"todo.txt": "buy milk\n"},
    "write_colors": {"colors.txt": "red\ngreen\nblue\n"},
    "write_name": {"name.txt": "agentkit"},
    "copy_file": {"copy.txt": lambda ws: _text(ws / "source.txt")},
    "read_square": {"square.txt": lambda ws: str(_numbers(ws / "side.txt")[0] ** 2)},
    "sum_prices": {"total.txt": lambda ws: str(sum(_numbers(ws / "prices.txt")))},
    "find_report": {"found.txt": lambda ws: _file_where(ws, lambda p: p.name.startswith("report"))},
    "find_password": {"found.txt": lambda ws: _file_where(ws, lambda p: "password" in _text(p))},
    "upper_line": {"loud.txt": lambda ws: _text(ws / "motto.txt").strip().upper()},
    "join_lines": {"joined.txt": lambda ws: " ".join(_text(ws / "parts.txt").splitlines())},
    "multiply_two_files": {"area.txt": _product("width.txt", "height.txt")},
    "full_name": {"fullname.txt": _joined("first.txt", "last.txt")},
    "json_total": {"result.json": lambda ws: _compact({"total": sum(_numbers(ws / "numbers.txt"))})},
    "json_person": {"person.json": lambda ws: _compact({"name": _field(ws / "person.txt", "name"),
                                                          "age": int(_field(ws / "person.txt", "age"))})},
    "count_lines": {"count.txt": lambda ws: str(len(_text(ws / "guests.txt").splitlines()))},
    "count_files": {"count.txt": lambda ws: str(sum(p.is_file() for p in (ws / "inbox").iterdir()))},
    "index_founded": {"founded.txt": "1987"},
    "index_ceo": {"ceo.txt": "Amara Lindqvist"},
    "replan_expenses": {"sum.txt": lambda ws: str(sum(_numbers(ws / "2024" / "march" / "expenses.txt")))},
    "replan_temps": {"max.txt": lambda ws: str(max(_numbers(ws / "readings" / "week_12.txt")))},
    # confirm: one parallel form per held-out goal, in the order above
    "calc_addition": {"addition.txt": str(2468 + 3579)},
    "calc_garden": {"garden.txt": str(15 * 8)},
    "calc_product": {"product.txt": str(37 * 24)},
    "calc_brackets": {"outcome.txt": str((6 + 2) * 9)},
    "calc_gratuity": {"gratuity.txt": str(140 * 0.15)},
    "write_farewell": {"farewell.txt": "see you soon"},
    "write_both": {"left.txt": "gamma", "right.txt": "delta"},
    "write_number": {"limit.txt": "4096"},
    "read_river": {"result.txt": lambda ws: _text(ws / "river.txt").strip()},
    "read_locker": {"number.txt": lambda ws: re.findall(r"\d+", _text(ws / "locker.txt"))[0]},
    "cost_times_five": {"total_cost.txt": lambda ws: str(_numbers(ws / "cost.txt")[0] * 5)},
    "find_log": {"match.txt": lambda ws: _file_where(ws, lambda p: p.suffix == ".log")},
    "add_two_numbers": {"added.txt": lambda ws: str(_numbers(ws / "p.txt")[0] + _numbers(ws / "q.txt")[0])},
    "reverse_order": {"backwards.txt": lambda ws: " ".join(_text(ws / "phrase.txt").split()[::-1])},
    "top_line": {"top.txt": lambda ws: _text(ws / "events.txt").splitlines()[0]},
    "find_refund": {"answer.txt": lambda ws: _file_where(ws, lambda p: "refund" in _text(p))},
    "json_album": {"album.json": lambda ws: _compact({"artist": _field(ws / "album.txt", "artist"),
                                                        "year": int(_field(ws / "album.txt", "year"))})},
    "word_count": {"words.txt": lambda ws: str(len(_text(ws / "quote.txt").split()))},
    "index_office": {"office.txt": "Ghent"},
    "replan_scores": {"twice.txt": lambda ws: str(2 * _numbers(ws / "games" / "scores.txt")[0])},
}  # fmt: skip


def _seeded(goal: Path, tmp_path: Path) -> tuple[GoalSpec, Path]:
    """The goal's spec and a fresh copy of its seed workspace (and `files:`), as a run starts."""
    spec, seed = load_goal(goal)
    workspace = tmp_path / "workspace"
    if seed.is_dir():
        shutil.copytree(seed, workspace)
    else:
        workspace.mkdir()
    for relative, text in spec.files.items():
        (workspace / relative).parent.mkdir(parents=True, exist_ok=True)
        (workspace / relative).write_text(text, encoding="utf-8")
    return spec, workspace


def _solve(name: str, workspace: Path) -> dict[str, str]:
    texts = {rel: text(workspace) if callable(text) else text for rel, text in SOLUTIONS[name].items()}
    for relative, text in texts.items():
        (workspace / relative).parent.mkdir(parents=True, exist_ok=True)
        (workspace / relative).write_text(text, encoding="utf-8")
    return texts


GOAL_FILES = _goal_files()
IDS = [f.stem for f in GOAL_FILES]


def test_goal_files_load_with_unique_names_equal_to_their_stems() -> None:
    names = [load_goal(f)[0].name for f in GOAL_FILES]
    assert names == [f.stem for f in GOAL_FILES]
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    assert len(names) >= 40
    assert not list(GOALS.glob("*.yaml")), "goal files live in train/, heldout/ or confirm/, not at the top"


def test_train_heldout_and_confirm_are_disjoint_and_filled() -> None:
    train = {f.stem for f in (GOALS / "train").glob("*.yaml")}
    heldout = {f.stem for f in (GOALS / "heldout").glob("*.yaml")}
    confirm = {f.stem for f in (GOALS / "confirm").glob("*.yaml")}
    assert len(train) >= 20 and len(heldout) >= 20
    assert len(confirm) == 20, "one confirm goal per held-out goal"
    assert not train & heldout and not train & confirm and not heldout & confirm


def test_every_seed_folder_belongs_to_a_goal() -> None:
    for split in SPLITS:
        folders = {p.name for p in (GOALS / split).iterdir() if p.is_dir()}
        assert folders <= {f.stem for f in (GOALS / split).glob("*.yaml")}, split


def _normalised(sentence: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9.]+", " ", sentence.lower()).split())


def _sentences(split: str) -> set[str]:
    return {_normalised(load_goal(f)[0].goals[0]) for f in (GOALS / split).glob("*.yaml")}


def test_heldout_sentences_differ_from_every_train_sentence() -> None:
    train = _sentences("train")
    for goal in (GOALS / "heldout").glob("*.yaml"):
        assert _normalised(load_goal(goal)[0].goals[0]) not in train, goal.stem


def test_each_confirm_goal_is_a_parallel_form_of_one_heldout_goal() -> None:
    """Each names its sibling on its second line; the siblings are the held-out goals, once each, and
    a pair shares tools, indexes, budgets, the kinds of checks, and whether it has seed files."""
    siblings = {}
    for goal in sorted((GOALS / "confirm").glob("*.yaml")):
        found = re.match(r"# parallel form of heldout/(\w+)\.yaml$", _text(goal).splitlines()[1])
        assert found, f"{goal.name}: second line must be '# parallel form of heldout/NAME.yaml'"
        siblings[goal.stem] = found[1]
    assert sorted(siblings.values()) == sorted(f.stem for f in (GOALS / "heldout").glob("*.yaml"))
    for name, sibling in siblings.items():
        (new, new_seed), (old, old_seed) = (load_goal(GOALS / split / f"{n}.yaml") for split, n
                                            in (("confirm", name), ("heldout", sibling)))  # fmt: skip
        assert (new.tools, new.indexes, new.budgets) == (old.tools, old.indexes, old.budgets), name
        assert [type(c).__name__ for c in new.checks] == [type(c).__name__ for c in old.checks], name
        assert new_seed.is_dir() == old_seed.is_dir(), name


def test_confirm_sentences_differ_from_every_train_and_heldout_sentence() -> None:
    # ... and from the goals examples/agent_lora trains smollm2-agent-lora on (disjoint, says its README)
    lora_goals = (BENCH.parent / "examples" / "agent_lora" / "goals").glob("*.yaml")
    lora = {_normalised(load_goal(f)[0].goals[0]) for f in lora_goals}
    earlier = _sentences("train") | _sentences("heldout") | lora
    confirm = [_normalised(load_goal(f)[0].goals[0]) for f in (GOALS / "confirm").glob("*.yaml")]
    assert confirm and not [s for s in confirm if s in earlier]
    assert len(set(confirm)) == len(confirm)


def test_solutions_cover_exactly_the_goals() -> None:
    assert set(SOLUTIONS) == set(IDS)


def test_tool_names_are_not_in_the_sentences() -> None:
    sentences = [load_goal(f)[0].goals[0] for f in GOAL_FILES]
    assert not [s for s in sentences if re.search(r"\b(read_file|write_file|list_files|search_index)\b", s)]
    # "with the calculator" reads naturally in a few sentences; most leave the tool to the agent.
    assert sum("calculator" in s for s in sentences) <= len(sentences) // 4


@pytest.mark.parametrize("goal", GOAL_FILES, ids=IDS)
def test_goal_is_one_sentence_with_the_standard_fields(goal: Path) -> None:
    spec, _ = load_goal(goal)
    assert len(spec.goals) == 1
    sentence = spec.goals[0]
    assert sentence[-1] in ".?" and not re.search(r"[.?!]\s", sentence[:-1]), f"two sentences: {sentence!r}"
    label = {"heldout": "held-out"}.get(goal.parent.name, goal.parent.name)
    assert _text(goal).startswith(f"# {spec.name} ({label}): "), "header: # NAME (split): what it tests"
    assert "strategy" not in spec.model_fields_set, "leave strategy to the loop's default"
    assert 6 <= spec.budgets.max_steps <= 8 and spec.budgets.max_seconds == 300
    assert spec.workspace == spec.name
    assert spec.checks, "a goal without checks cannot fail"
    # A checked file left by an earlier run must be removed before a fresh one: outputs lists it.
    checked = {getattr(c, "file_contains", None) or getattr(c, "file_exists", None) for c in spec.checks}
    assert spec.outputs and checked - {None} <= set(spec.outputs)
    if spec.indexes:
        assert spec.indexes == [INDEX] and spec.tool_specs() == [*BASE_TOOLS, "search_index"]
    else:
        assert spec.tool_specs() == BASE_TOOLS


@pytest.mark.parametrize("goal", GOAL_FILES, ids=IDS)
def test_checks_fail_on_the_seed_and_pass_on_a_correct_solution(goal: Path, tmp_path: Path) -> None:
    spec, workspace = _seeded(goal, tmp_path)
    before = run_checks(spec.checks, workspace)
    assert not all(r.passed for r in before), "the goal passes without a run"
    texts = _solve(spec.name, workspace)
    assert set(texts) <= set(spec.outputs)
    after = run_checks(spec.checks, workspace)
    assert all(r.passed for r in after), [r.as_dict() for r in after if not r.passed]
    for relative, text in texts.items():  # JSON goals: indented JSON passes as compact does
        if relative.endswith(".json"):
            (workspace / relative).write_text(json.dumps(json.loads(text), indent=2), encoding="utf-8")
            assert all(r.passed for r in run_checks(spec.checks, workspace)), relative


@pytest.mark.parametrize("goal", [f for f in GOAL_FILES if f.stem.startswith("replan_")],
                         ids=[i for i in IDS if i.startswith("replan_")])  # fmt: skip
def test_replan_goals_send_the_first_try_astray(goal: Path, tmp_path: Path) -> None:
    """A file the sentence names as input is not at the workspace top (or none is named): reading it
    fails, and listing the files finds it."""
    spec, workspace = _seeded(goal, tmp_path)
    named = set(re.findall(r"[\w-]+\.\w+", spec.goals[0])) - set(spec.outputs)
    assert not [n for n in named if (workspace / n).exists()]
    assert any(p.parent != workspace for p in workspace.rglob("*") if p.is_file()), "no input in a sub-folder"


def test_index_answers_are_in_the_index_documents() -> None:
    docs = " ".join(_text(p) for p in (GOALS / "index_docs").iterdir() if p.is_file())
    index_goals = [spec for spec, _ in map(load_goal, GOAL_FILES) if spec.indexes]
    assert index_goals
    for spec in index_goals:
        assert all(getattr(c, "text", "") in docs for c in spec.checks), spec.name
    assert f"agentkit index add {INDEX} bench/agent_goals/index_docs" in _text(GOALS / "README.md")


def test_readme_lists_every_goal_and_every_category_is_in_every_split() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| ([^|]+?) \|", _text(GOALS / "README.md"), re.M)
    listed = {name: (split, category) for name, split, category in rows}
    assert len(listed) == len(rows), "a goal listed twice"
    assert set(listed) == set(IDS)
    for goal in GOAL_FILES:
        assert listed[goal.stem][0] == goal.parent.name, goal.stem
    halves: dict[str, set[str]] = {}
    for split, category in listed.values():
        halves.setdefault(category, set()).add(split)
    assert {c for c, s in halves.items() if not {"train", "heldout"} <= s} == set()
    # One confirm goal per held-out goal: the same categories, as many of each.
    categories = {split: Counter(c for s, c in listed.values() if s == split) for split in SPLITS}
    assert categories["confirm"] == categories["heldout"]
    required = {"read → compute → write", "find a file", "transform text", "two inputs", "JSON output",
                "counting", "index question", "re-plan"}  # fmt: skip
    assert required <= set(halves)


def _agent_eval(monkeypatch: pytest.MonkeyPatch):
    """bench/agent_eval.py as a module (bench/ is no package); its dataclasses need it in sys.modules."""
    spec = importlib.util.spec_from_file_location("agent_eval", BENCH / "agent_eval.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "agent_eval", module)
    spec.loader.exec_module(module)
    return module


def test_agent_eval_reads_the_split_layout_and_stages_the_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_eval = _agent_eval(monkeypatch)
    heldout = agent_eval.goal_files(GOALS, None, None)  # default split: heldout
    train = agent_eval.goal_files(GOALS, None, None, "train")
    confirm = agent_eval.goal_files(GOALS, None, None, "confirm")
    assert {f.parent.name for f in heldout} == {"heldout"} and {f.parent.name for f in train} == {"train"}
    assert {f.parent.name for f in confirm} == {"confirm"} and len(confirm) == 20
    both = sorted(heldout + train, key=lambda f: f.stem)  # all: confirm/ runs only when named
    assert agent_eval.goal_files(GOALS, None, None, "all") == both
    assert agent_eval.goal_files(GOALS, None, 3, "all") == both[:3]
    names = [train[0].stem, heldout[0].stem, confirm[0].stem]
    assert agent_eval.goal_files(GOALS, names, None) == [train[0], heldout[0], confirm[0]]  # any split
    with pytest.raises(SystemExit, match="unknown goal"):
        agent_eval.goal_files(GOALS, ["no_such_goal"], None)

    goal = GOALS / "train" / "sum_prices.yaml"
    staged = agent_eval.stage(goal, tmp_path, "smollm2-135m-instruct", None, None, {"max_steps": 3})
    spec, workspace = load_goal(staged)
    assert _text(workspace / "prices.txt") == _text(GOALS / "train" / "sum_prices" / "prices.txt")
    assert spec.budgets.max_steps == 3 and "strategy" not in spec.model_fields_set
