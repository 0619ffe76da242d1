"""Issue 15 §4: `agentkit models export ADAPTER DIR --for vllm` on a tiny random llama (no download):
the folder plain PEFT loads gives the registry adapter's outputs, the printed `vllm serve` command
names the base folder and the LoRA module (and `--max-lora-rank` past r=16), and what vLLM cannot
serve is refused in one line, exit 2, leaving nothing behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentkit.cli.app import main
from agentkit.errors import BadInputError
from agentkit.registry import Registry, SourceInfo
from agentkit.registry.vllm_export import VLLM_MAX_LORA_RANKS, export_vllm, vllm_max_lora_rank

BASE = "tiny-llama"
TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
IDS = [[1, 5, 9, 13, 2, 7]]


def _tiny_config() -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)  # fmt: skip


def _adapter(registry: Registry, adapter: str, config: Any, *, seed: int, template: str = TEMPLATE,
             method: str = "lora") -> None:  # fmt: skip
    """An adapter of BASE made with PEFT directly, random (non-zero) weights, as a tuning run registers it."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    def write(stage: Path) -> dict[str, Any]:
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(registry.path(BASE), use_safetensors=True)
        get_peft_model(base, config).save_pretrained(stage)
        return {"kind": "adapter", "task": "causal_lm", "base": BASE, "method": method,
                "source": SourceInfo(type="tuning", ref="test"), "chat_template": template,
                "lineage": {"base_weights_sha256": registry.card(BASE).weights}}  # fmt: skip

    registry.create_entry(adapter, write)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A registry with a tiny llama base and adapters vLLM can and cannot serve."""
    import torch
    from peft import LoraConfig, PrefixTuningConfig
    from transformers import LlamaForCausalLM

    registry = Registry(tmp_path_factory.mktemp("vllm") / "home")

    def base(stage: Path) -> dict[str, Any]:
        torch.manual_seed(0)
        LlamaForCausalLM(_tiny_config()).save_pretrained(stage)
        return {"kind": "base", "task": "causal_lm", "source": SourceInfo(type="test", ref="tiny"),
                "chat_template": TEMPLATE}  # fmt: skip

    registry.create_entry(BASE, base)
    lora = {"lora_alpha": 16, "lora_dropout": 0.0, "init_lora_weights": False, "task_type": "CAUSAL_LM"}
    _adapter(registry, "tiny-lora", LoraConfig(r=4, target_modules=["q_proj", "v_proj"], **lora), seed=1)
    _adapter(registry, "tiny-lora-r24", LoraConfig(r=24, target_modules="all-linear", **lora), seed=2)
    head = LoraConfig(r=4, target_modules=["q_proj", "lm_head"], **lora)
    _adapter(registry, "tiny-lora-head", head, seed=3)
    _adapter(registry, "tiny-dora", LoraConfig(r=4, target_modules=["q_proj"], use_dora=True, **lora), seed=4)
    _adapter(registry, "tiny-own-template", LoraConfig(r=4, target_modules=["q_proj"], **lora), seed=5,
             template="{{ messages[0]['content'] }}")  # fmt: skip
    _adapter(registry, "tiny-prefix", PrefixTuningConfig(num_virtual_tokens=2, task_type="CAUSAL_LM"), seed=6,
             method="prefix_tuning")  # fmt: skip
    return registry


@pytest.fixture
def home(lab: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The lab registry as the CLI's $AGENTKIT_HOME."""
    monkeypatch.setenv("AGENTKIT_HOME", str(lab.root))
    return lab


def _logits(base_path: Path, adapter_dir: Path | None) -> Any:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_path, use_safetensors=True)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    with torch.no_grad():
        return model(torch.tensor(IDS)).logits


def _lora_tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Fix:" in lines[0], lines
    return lines[0]


# ---- the exported folder ----------------------------------------------------------------------------
def test_plain_peft_loads_the_export_and_gives_the_registry_adapters_outputs(
    home: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    out = tmp_path / "tiny-lora-vllm"
    assert main(["models", "export", "tiny-lora", str(out), "--for", "vllm"]) == 0
    base_path = home.entry_dir(BASE).resolve()
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "agentkit_card.json"} <= names
    assert "card.json" not in names and not list(out.glob("*.gguf")) and not list(out.glob("*.bin"))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_path)
    assert config["peft_type"] == "LORA" and config["r"] == 4 and not config["use_dora"]
    assert not config["modules_to_save"] and config["bias"] == "none"

    exported = _lora_tensors(out / "adapter_model.safetensors")
    registered = _lora_tensors(home.entry_dir("tiny-lora") / "adapter_model.safetensors")
    assert exported.keys() == registered.keys()
    assert all(k.endswith(("lora_A.weight", "lora_B.weight")) for k in exported)
    assert all(torch.equal(exported[k], registered[k]) for k in exported)
    via_export = _logits(base_path, out)
    assert torch.equal(via_export, _logits(base_path, home.entry_dir("tiny-lora")))
    assert not torch.allclose(via_export, _logits(base_path, None))  # the adapter does something


def test_the_printed_command_names_the_base_folder_and_the_lora_module(
    home: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "served"
    assert main(["models", "export", "tiny-lora", str(out), "--for", "vllm"]) == 0
    printed = capsys.readouterr().out
    base_path = home.entry_dir(BASE).resolve()
    command = f"vllm serve {base_path} --enable-lora --lora-modules tiny-lora={out.resolve()}"
    assert f"  {command}\n" in printed  # r=4: vLLM's default --max-lora-rank (16) holds, so no flag
    assert "--max-lora-rank" not in printed and "--chat-template" not in printed  # same template as the base
    assert f"base {BASE}: {base_path}" in printed
    assert "model 'tiny-lora'" in printed and 'model="tiny-lora"' in printed
    assert "model: {provider: openai, base_url: http://HOST:8000/v1, model: tiny-lora}" in printed


def test_a_rank_above_16_adds_the_max_lora_rank_vllm_accepts(
    home: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r24"
    assert main(["models", "export", "tiny-lora-r24", str(out), "--for", "vllm"]) == 0
    printed = capsys.readouterr().out
    # vLLM's --max-lora-rank takes 8, 16, 32, ...: r=24 needs 32
    assert f"--lora-modules tiny-lora-r24={out.resolve()} --max-lora-rank 32\n" in printed
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 24


def test_max_lora_rank_is_the_smallest_choice_that_holds_r() -> None:
    assert [vllm_max_lora_rank(r, "a") for r in (1, 8, 16, 17, 32, 33, 300, 512)] == [
        None, None, None, 32, 32, 64, 320, 512]  # fmt: skip
    assert VLLM_MAX_LORA_RANKS[-1] == 512
    with pytest.raises(BadInputError, match=r"r=513 is above vLLM's largest --max-lora-rank \(512\)"):
        vllm_max_lora_rank(513, "a")


def test_an_lm_head_target_leaves_out_peft_s_copy_of_the_base_head(home: Registry, tmp_path: Path) -> None:
    import torch

    registered = _lora_tensors(home.entry_dir("tiny-lora-head") / "adapter_model.safetensors")
    copied = [k for k in registered if k.endswith("base_layer.weight")]
    assert copied == ["base_model.model.lm_head.base_layer.weight"]  # what older vLLM refuses
    done = export_vllm(home, "tiny-lora-head", tmp_path / "head")
    exported = _lora_tensors(done.target / "adapter_model.safetensors")
    assert set(exported) == set(registered) - set(copied)
    assert any("lm_head" in note for note in done.notes)
    base_path = home.entry_dir(BASE).resolve()
    assert torch.equal(_logits(base_path, done.target), _logits(base_path, home.entry_dir("tiny-lora-head")))


def test_an_adapter_on_its_own_chat_template_passes_it_to_vllm(home: Registry, tmp_path: Path) -> None:
    done = export_vllm(home, "tiny-own-template", tmp_path / "own")
    template = done.target / "chat_template.jinja"
    assert done.chat_template == template and template.read_text() == "{{ messages[0]['content'] }}"
    assert done.command()[-2:] == ["--chat-template", str(template)]


def test_the_module_name_can_differ_from_the_adapter_id(home: Registry, tmp_path: Path) -> None:
    done = export_vllm(home, "tiny-lora", tmp_path / "named", name="support-bot")
    assert f"support-bot={done.target}" in done.command()
    with pytest.raises(BadInputError, match="Invalid registry id 'a=b'"):  # NAME=DIR has no room for '='
        export_vllm(home, "tiny-lora", tmp_path / "bad", name="a=b")
    assert [p.name for p in tmp_path.iterdir()] == ["named"]


# ---- refusals ---------------------------------------------------------------------------------------
def test_a_non_lora_adapter_is_refused_naming_the_method_and_the_fix(
    home: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prefix"
    assert main(["models", "export", "tiny-prefix", str(out), "--for", "vllm"]) == 2
    line = _one_error_line(capsys)
    assert "'tiny-prefix' is a prefix_tuning adapter" in line and "vLLM serves LoRA adapters only" in line
    assert "`method: lora`" in line
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing written, no staging left


def test_dora_is_refused_in_one_line(home: Registry, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert main(["models", "export", "tiny-dora", str(tmp_path / "dora"), "--for", "vllm"]) == 2
    line = _one_error_line(capsys)
    assert "cannot be served by vLLM: it is DoRA" in line and "use_dora: false" in line
    assert not list(tmp_path.iterdir())


def test_a_base_entry_is_refused_with_the_vllm_serve_command_for_it(
    home: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "export", BASE, str(tmp_path / "b"), "--for", "vllm"]) == 2
    line = _one_error_line(capsys)
    assert "is a base entry, not an adapter" in line
    assert f"vllm serve {home.entry_dir(BASE).resolve()}" in line


def test_a_non_empty_target_is_refused_and_left_as_it_was(
    home: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["models", "export", "tiny-lora", str(out), "--for", "vllm"]) == 2
    line = _one_error_line(capsys)
    assert f"{out.resolve()} exists and is not empty." in line and "new or empty folder" in line
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no staging left beside it


def test_a_write_that_fails_halfway_leaves_nothing(
    home: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    copy = shutil.copy2

    def copy_then_fail(source: Any, target: Any, **kwargs: Any) -> Any:
        if Path(source).name == "agentkit_card.json" or Path(target).name == "agentkit_card.json":
            raise OSError(28, "No space left on device")
        return copy(source, target, **kwargs)

    monkeypatch.setattr(shutil, "copy2", copy_then_fail)
    with pytest.raises(OSError, match="No space left"):
        export_vllm(home, "tiny-lora", tmp_path / "full-disk")  # the card is the last file written
    assert not list(tmp_path.iterdir())


def test_an_unknown_for_is_a_usage_error(home: Registry, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert main(["models", "export", "tiny-lora", str(tmp_path / "x"), "--for", "gguf"]) == 2
    assert "'gguf' is not one of 'peft', 'vllm'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_for_peft_is_still_the_default_plain_copy(home: Registry, tmp_path: Path) -> None:
    out = tmp_path / "peft"
    assert main(["models", "export", "tiny-lora", str(out)]) == 0
    registered = home.entry_dir("tiny-lora")
    assert {p.name for p in out.iterdir()} == {p.name for p in registered.iterdir()} - {"card.json"} | {
        "agentkit_card.json"}  # fmt: skip
    assert (out / "adapter_config.json").read_bytes() == (registered / "adapter_config.json").read_bytes()


def test_a_folder_path_vllm_cannot_parse_is_refused(lab: Registry, tmp_path: Path) -> None:
    for name in ("a=b", "a,b"):
        with pytest.raises(BadInputError, match="cannot parse"):
            export_vllm(lab, "tiny-lora", tmp_path / name)
        assert not (tmp_path / name).exists()
