"""LocalClassifier and `agentkit classify` on a tiny LoRA (and a tiny full fine-tune) of the built-in
MiniLM encoder: labels and scores, batch == invoke, the tool, the CLI's inputs and its bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agentkit.cli.app import main
from agentkit.errors import BadInputError
from agentkit.models import LocalClassifier
from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from agentkit.tuning import TuneConfig, train

pytestmark = pytest.mark.integration

POSITIVE = ["a wonderful, moving film", "brilliant acting and a great story", "i loved every minute of it",
            "a joyful, charming delight", "superb and beautiful", "the best movie of the year",
            "funny, warm and wise", "an excellent, gripping thriller"]  # fmt: skip
NEGATIVE = ["a dull, boring mess", "terrible acting and an awful script", "i hated every minute of it",
            "a tedious, lifeless bore", "ugly and stupid", "the worst movie of the year",
            "painfully unfunny and cold", "a bad, sloppy thriller"]  # fmt: skip
TEXTS = [
    "a great, warm film",
    "an awful bore",
    "it was fine",
    "",
    "the plot is stupid but the cast is superb",
]
LABELS = {"neg", "pos"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Registry:
    """A registry with minilm-l6, a LoRA classification adapter `senti-lora` and a fully fine-tuned
    classifier `senti-full`, each trained for a few steps on 16 obvious rows."""
    root = tmp_path_factory.mktemp("classify")
    home = Registry(root / "home")
    home.create_entry("minilm-l6", lambda s: copy_hf_folder(registry.path("minilm-l6"), s, link=True))
    data = root / "train.jsonl"
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    for method, block, lr in (("lora", {"r": 4, "alpha": 8}, 5e-3), ("full", {}, 1e-4)):
        train(TuneConfig.model_validate({
            "base": "minilm-l6", "task": "sequence_classification", "method": method, method: block,
            "data": {"train": str(data), "format": "text_label", "eval_fraction": 0},
            "train": {"learning_rate": lr, "batch_size": 8, "max_length": 32, "max_steps": 3},
            "output": f"senti-{method}",
        }), registry=home)  # fmt: skip
    return home


@pytest.fixture(scope="module")
def clf(home: Registry) -> LocalClassifier:
    return LocalClassifier(adapter="senti-lora", home=str(home.root), batch_size=2)


def test_invoke_and_batch_give_labels_and_probabilities(clf: LocalClassifier) -> None:
    single = [clf.invoke(t) for t in TEXTS]
    assert all(p["label"] in LABELS and 0.5 <= p["score"] <= 1 for p in single)  # 2 classes: top >= 0.5
    batched = clf.batch(TEXTS)  # 3 forwards of <= 2 texts, length-sorted
    assert [p["label"] for p in batched] == [p["label"] for p in single]
    assert [p["score"] for p in batched] == pytest.approx([p["score"] for p in single], abs=1e-5)
    assert clf.labels == ["neg", "pos"] and clf.batch([]) == []


def test_batch_reports_a_non_text_in_its_place(clf: LocalClassifier) -> None:
    out = clf.batch(["good", 3, "bad"], return_exceptions=True)  # type: ignore[list-item]
    assert out[0]["label"] in LABELS and isinstance(out[1], BadInputError) and out[2]["label"] in LABELS
    with pytest.raises(BadInputError, match="not a str"):
        clf.invoke(["a list"])  # type: ignore[arg-type]


def test_threads_share_one_model_and_agree(clf: LocalClassifier, home: Registry) -> None:
    expected = clf.batch(TEXTS)
    other = LocalClassifier(adapter="senti-lora", home=str(home.root))
    assert other._loaded() is clf._loaded()  # one load per process and (base, adapter)
    results: dict[int, list] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, other.batch(TEXTS))) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all([p["label"] for p in results[i]] == [p["label"] for p in expected] for i in range(4))


@pytest.mark.filterwarnings("ignore:This API is in beta")  # Runnable.as_tool
def test_tool_classifies_text(clf: LocalClassifier) -> None:
    tool = clf.to_tool()
    assert tool.name == "classify_text" and "neg, pos" in tool.description
    assert set(tool.args) == {"text"}
    assert tool.invoke({"text": TEXTS[0]}) == clf.invoke(TEXTS[0])
    assert clf.as_tool(name="sentiment").invoke(TEXTS[1])["label"] == clf.invoke(TEXTS[1])["label"]


def test_full_fine_tuned_entry_is_a_classifier_on_its_own(home: Registry) -> None:
    full = LocalClassifier(model="senti-full", home=str(home.root))
    assert full.labels == ["neg", "pos"] and full.invoke(TEXTS[0])["label"] in LABELS
    assert LocalClassifier.from_entry("senti-full", home=str(home.root)).adapter is None
    with pytest.raises(BadInputError, match="no adapter to put on"):
        LocalClassifier.from_entry("senti-full", model="minilm-l6", home=str(home.root))


def test_non_classifiers_are_refused_with_the_fix(home: Registry) -> None:
    root = str(home.root)
    with pytest.raises(BadInputError, match="no trained classification head.*adapter="):
        LocalClassifier(home=root).invoke("x")  # minilm-l6 alone is an embedding model
    with pytest.raises(BadInputError, match="model='minilm-l6', adapter='senti-lora'"):
        LocalClassifier(model="senti-lora", home=root).invoke("x")
    with pytest.raises(
        BadInputError, match="not a classification adapter of 'senti-full'.*model='minilm-l6'"
    ):
        LocalClassifier(model="senti-full", adapter="senti-lora", home=root).invoke("x")
    with pytest.raises(BadInputError, match="with no adapter"):
        LocalClassifier(adapter="senti-full", home=root).invoke("x")


# ---------------------------------------------------------------- the CLI


def run(home: Registry, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AGENTKIT_HOME": str(home.root)}
    command = [sys.executable, "-m", "agentkit", "classify", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)


def test_cli_single_text_and_txt_file(home: Registry, clf: LocalClassifier, tmp_path: Path) -> None:
    out = run(home, "senti-lora", TEXTS[0], "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == pytest.approx(clf.invoke(TEXTS[0]))  # same head in a fresh process
    texts = tmp_path / "texts.txt"
    texts.write_text(f"{TEXTS[0]}\n\n{TEXTS[1]}\n")
    preds = tmp_path / "out" / "preds.jsonl"
    out = run(home, "senti-lora", "--input", str(texts), "--output", str(preds))
    assert out.returncode == 0 and "classified 2 texts" in out.stdout, out.stderr
    lines = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [(r["row"], r["text"]) for r in lines] == [(1, TEXTS[0]), (3, TEXTS[1])]  # row = line number
    assert [r["label"] for r in lines] == [clf.invoke(t)["label"] for t in TEXTS[:2]]
    assert [p.name for p in preds.parent.iterdir()] == ["preds.jsonl"]  # no temp file left


def test_cli_tables_with_a_text_column(home: Registry, clf: LocalClassifier, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    monkeypatch.setenv("AGENTKIT_HOME", str(home.root))
    table = tmp_path / "reviews.tsv"
    table.write_text("stars\treview\n5\t" + TEXTS[0] + "\n1\t" + TEXTS[1] + "\n")
    preds = tmp_path / "preds.jsonl"
    args = ["-i", str(table), "--text-column", "review", "-o", str(preds), "--json"]
    assert main(["classify", "senti-lora", *args]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 2
    assert [json.loads(line)["text"] for line in preds.read_text().splitlines()] == TEXTS[:2]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps({"id": f"r{i}", "sentence": t}) for i, t in enumerate(TEXTS[:3])))
    assert main(["classify", "senti-lora", "--input", str(jsonl), "--model", "minilm-l6"]) == 0  # to stdout
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["label"]) for r in printed] == [
        (f"r{i}", clf.invoke(t)["label"]) for i, t in enumerate(TEXTS[:3])
    ]


def test_cli_bad_inputs_exit_2_naming_the_problem(home: Registry, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    out = run(home, "senti-lora", "--input", str(tmp_path / "missing.txt"))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "missing.txt" in out.stderr
    monkeypatch.setenv("AGENTKIT_HOME", str(home.root))
    table = tmp_path / "t.csv"
    table.write_text("stars,review\n5,great\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    header_only = tmp_path / "h.tsv"
    header_only.write_text("text\tlabel\n")
    cases = [
        (["-i", str(table)], "columns are: stars, review"),
        (["-i", str(table), "--text-column", "body"], "no column 'body'"),
        (["-i", str(empty)], "empty.txt: the file holds no text"),
        (["-i", str(header_only)], "h.tsv: the file holds no rows below its header"),
        (["-i", str(table), "some text"], "not both"),
        (["some text", "-o", str(tmp_path / "p.jsonl")], "--output applies to --input"),
    ]
    for args, expected in cases:
        assert main(["classify", "senti-lora", *args]) == 2, args
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1, err
    assert main(["classify", "minilm-l6", "text"]) == 2  # an encoder without a head
    assert "no trained classification head" in capsys.readouterr().err
