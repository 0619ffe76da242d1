"""Registry bookkeeping on real files: atomic entries, locks, hashes, pickle refusal.

The weights here are small real safetensors files; no model is loaded (that is integration).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from agentkit.errors import (
    BadInputError,
    EntryExistsError,
    IntegrityError,
    UnknownModelError,
    UnsafeWeightsError,
)
from agentkit.registry import Registry, SourceInfo
from agentkit.registry.importer import copy_hf_folder


def write_tiny(stage: Path) -> dict:
    save_file({"w": torch.arange(6, dtype=torch.float32)}, stage / "model.safetensors")
    (stage / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    return {"kind": "base", "task": "causal_lm", "source": SourceInfo(type="test", ref="tiny")}


def test_create_entry_publishes_card_with_weight_hashes(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    card = registry.create_entry("tiny", write_tiny)
    assert registry.ids() == ["tiny"]
    assert set(card.weights) == {"model.safetensors"}
    assert registry.verify("tiny").weights == card.weights
    assert not any((tmp_path / "tmp").iterdir())  # staging cleaned up


def test_failed_write_leaves_no_entry(tmp_path: Path) -> None:
    registry = Registry(tmp_path)

    def half_then_crash(stage: Path) -> dict:
        write_tiny(stage)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        registry.create_entry("tiny", half_then_crash)
    assert registry.ids() == []
    assert not any((tmp_path / "tmp").iterdir())


def test_folder_without_card_is_not_listed(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    (tmp_path / "models" / "half").mkdir(parents=True)
    (tmp_path / "models" / "half" / "model.safetensors").write_bytes(b"partial")
    assert registry.ids() == []
    with pytest.raises(UnknownModelError):
        registry.card("half")


def test_unknown_id_lists_what_exists(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.create_entry("tiny", write_tiny)
    with pytest.raises(UnknownModelError) as info:
        registry.card("tinny")
    message = str(info.value)
    assert "tinny" in message and "tiny" in message and "smollm2-135m-instruct" in message
    assert "agentkit models import" in message


def test_sha_mismatch_is_refused_and_registry_untouched(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.create_entry("tiny", write_tiny)
    card_before = (tmp_path / "models" / "tiny" / "card.json").read_text()
    weights = tmp_path / "models" / "tiny" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as info:
        registry.verify("tiny")
    assert "agentkit models rm tiny" in str(info.value)
    assert (tmp_path / "models" / "tiny" / "card.json").read_text() == card_before
    assert weights.read_bytes() == bytes(data)


def test_duplicate_id_is_refused(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.create_entry("tiny", write_tiny)
    with pytest.raises(EntryExistsError, match="--id"):
        registry.create_entry("tiny", write_tiny)


@pytest.mark.parametrize("bad", ["Upper", "../escape", "", "a" * 65, "sp ace"])
def test_invalid_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(BadInputError, match="Invalid registry id"):
        Registry(tmp_path).create_entry(bad, write_tiny)


def test_pickle_only_folder_is_refused_with_conversion_hint(tmp_path: Path) -> None:
    src = tmp_path / "pickled"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(UnsafeWeightsError) as info:
        Registry(tmp_path / "home").create_entry("pickled", lambda stage: copy_hf_folder(src, stage))
    assert "safetensors" in str(info.value) and "save_pretrained" in str(info.value)
    assert Registry(tmp_path / "home").ids() == []


def test_pickles_beside_safetensors_are_left_behind(tmp_path: Path) -> None:
    src = tmp_path / "mixed"
    src.mkdir()
    write_tiny(src)
    (src / "pytorch_model.bin").write_bytes(b"pickle")
    registry = Registry(tmp_path / "home")
    registry.create_entry("mixed", lambda stage: copy_hf_folder(src, stage))
    assert not (registry.entry_dir("mixed") / "pytorch_model.bin").exists()


def test_remove_and_update_card(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.create_entry("tiny", write_tiny)
    registry.update_card("tiny", metrics={"loss": 1.5})
    assert registry.card("tiny").metrics == {"loss": 1.5}
    registry.remove("tiny")
    assert registry.ids() == []
    with pytest.raises(UnknownModelError):
        registry.remove("tiny")


def _slow_create(root: str, marker: str) -> None:
    def write(stage: Path) -> dict:
        with open(marker, "a") as handle:  # one line per conversion actually performed
            handle.write("converted\n")
        time.sleep(0.5)  # widen the race window
        return write_tiny(stage)

    Registry(root).create_entry("shared", write, exist_ok=True)


def test_two_processes_creating_one_entry_convert_once(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_slow_create, args=(str(tmp_path / "home"), str(marker))) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert marker.read_text().count("converted") == 1
    registry = Registry(tmp_path / "home")
    assert registry.ids() == ["shared"]
    registry.verify("shared")


@pytest.mark.parametrize("bad", ["/abs/dir", "../up", "a/b"])
def test_read_and_remove_paths_refuse_ids_that_escape(tmp_path: Path, bad: str) -> None:
    registry = Registry(tmp_path)
    assert bad not in registry
    with pytest.raises(BadInputError, match="Invalid registry id"):
        registry.card(bad)
    with pytest.raises(BadInputError, match="Invalid registry id"):
        registry.remove(bad)
    assert not (tmp_path / "locks").exists()  # nothing created on the way to the refusal


def test_nested_weights_and_shard_index_are_hashed(tmp_path: Path) -> None:
    def nested(stage: Path) -> dict:
        fields = write_tiny(stage)
        (stage / "2_Dense").mkdir()
        save_file({"d": torch.ones(2)}, stage / "2_Dense" / "model.safetensors")
        (stage / "model.safetensors.index.json").write_text("{}")
        return fields

    card = Registry(tmp_path).create_entry("nested", nested)
    assert set(card.weights) == {"model.safetensors", "2_Dense/model.safetensors", "model.safetensors.index.json"}
    (tmp_path / "models" / "nested" / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    with pytest.raises(IntegrityError):
        Registry(tmp_path).verify("nested")


def test_a_linked_copy_shares_the_weight_files_and_copies_the_rest(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (src / "model.safetensors").write_bytes(b"weights")
    registry = Registry(tmp_path / "home")
    registry.create_entry("linked", lambda stage: copy_hf_folder(src, stage, link=True))
    folder = registry.entry_dir("linked")
    assert (folder / "model.safetensors").stat().st_ino == (src / "model.safetensors").stat().st_ino
    assert (folder / "config.json").stat().st_ino != (src / "config.json").stat().st_ino
    registry.remove("linked")
    assert (src / "model.safetensors").read_bytes() == b"weights"  # removing the entry leaves the source


@pytest.mark.parametrize("damage", ["{\"id\": \"tiny\", ", "{\"id\": \"tiny\"}", "\udcff"])
def test_a_damaged_card_names_its_file_and_does_not_hide_the_other_entries(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry(tmp_path)
    registry.create_entry("tiny", write_tiny)
    registry.create_entry("other", write_tiny)
    card = tmp_path / "models" / "tiny" / "card.json"
    card.write_bytes(damage.encode("utf-8", "surrogateescape"))  # cut short, fields missing, not UTF-8
    with pytest.raises(IntegrityError, match=r"models/tiny/card\.json is not a readable model card.*models rm tiny"):
        registry.card("tiny")
    assert [c.id for c in registry.list()] == ["other"]
    assert "models/tiny/card.json" in caplog.text
    registry.remove("tiny")  # the fix the error names works on the damaged entry
    assert registry.ids() == ["other"]
