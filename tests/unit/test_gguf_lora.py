"""GGUF LoRA conversion without a model: a tiny fake llama GGUF and a fake PEFT folder; the header
reader against gguf's own; the refusals, each one line naming the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agentkit.errors import BadInputError
from agentkit.registry.gguf_header import read_gguf_header
from agentkit.registry.gguf_lora import check_convertible, convert_lora, rope_rows_to_gguf

# A 1-block llama: hidden 8, 2 query heads of 4 dims, 1 KV head; the linears PEFT would target.
SHAPES = {"q_proj": (8, 8), "k_proj": (4, 8), "v_proj": (4, 8), "o_proj": (8, 8)}  # (out, in)
GGUF_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}
R = 2


def fake_base(path: Path, arch: str = "llama") -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_token_list(["<s>", "a", "b"])  # an array of strings, which the header reader skips
    for module, shape in SHAPES.items():
        writer.add_tensor(f"blk.0.{GGUF_NAMES[module]}.weight", np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def fake_adapter(folder: Path, **config: Any) -> dict[str, np.ndarray]:
    from safetensors.numpy import save_file

    folder.mkdir()
    rng = np.random.default_rng(0)
    tensors = {}
    for module, (out, n_in) in SHAPES.items():
        prefix = f"base_model.model.model.layers.0.self_attn.{module}"
        tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((R, n_in)).astype(np.float32)
        tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((out, R)).astype(np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    fields = {"peft_type": "LORA", "r": R, "lora_alpha": 4, "bias": "none", "use_dora": False, **config}
    (folder / "adapter_config.json").write_text(json.dumps(fields))
    return tensors


def written(path: Path) -> dict[str, np.ndarray]:
    from gguf import GGUFReader

    return {t.name: np.asarray(t.data) for t in GGUFReader(path).tensors}


def test_header_reader_agrees_with_gguf_and_refuses_a_cut_file(tmp_path: Path) -> None:
    from gguf import GGUFReader

    path = fake_base(tmp_path / "base.gguf")
    header = read_gguf_header(path)
    reader = GGUFReader(path)
    assert header.metadata["general.architecture"] == "llama" and header.metadata["llama.block_count"] == 1
    assert "tokenizer.ggml.tokens" not in header.metadata  # arrays are skipped
    assert header.tensors == {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    assert header.tensors["blk.0.attn_k.weight"] == (8, 4)  # ggml order: (in, out)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BadInputError, match="not a readable GGUF file") as info:
        read_gguf_header(cut)
    assert "\n" not in str(info.value)


def test_rope_rows_interleave_the_two_halves_of_each_head() -> None:
    rows = np.arange(8).reshape(8, 1)  # 2 heads x 4 rows: halves (0, 1 | 2, 3), (4, 5 | 6, 7)
    assert rope_rows_to_gguf(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert rope_rows_to_gguf(np.arange(4).reshape(4, 1), 1)[:, 0].tolist() == [0, 2, 1, 3]


@pytest.mark.parametrize("rslora", [False, True])
def test_convert_writes_the_llamacpp_layout(tmp_path: Path, rslora: bool) -> None:
    base = fake_base(tmp_path / "base.gguf")
    peft = fake_adapter(tmp_path / "adapter", use_rslora=rslora)
    facts = convert_lora(tmp_path / "adapter", base, tmp_path / "out.gguf", adapter_id="tiny")
    assert facts["modules"] == 4 and facts["alpha"] == 4 and facts["rope_rows_reordered"]
    meta = read_gguf_header(tmp_path / "out.gguf").metadata
    keys = ("general.type", "adapter.type", "adapter.lora.alpha")
    assert [meta[k] for k in keys] == ["adapter", "lora", 4.0]
    out = written(tmp_path / "out.gguf")
    factor = np.sqrt(R) if rslora else 1.0  # llama.cpp scales by alpha / r; rsLoRA by alpha / sqrt(r)
    for module, heads in (("q_proj", 2), ("k_proj", 1), ("v_proj", None), ("o_proj", None)):
        a = peft[f"base_model.model.model.layers.0.self_attn.{module}.lora_A.weight"]
        b = peft[f"base_model.model.model.layers.0.self_attn.{module}.lora_B.weight"] * factor
        name = f"blk.0.{GGUF_NAMES[module]}.weight"
        assert np.array_equal(out[f"{name}.lora_a"], a)  # A as is: (r, in)
        assert np.allclose(out[f"{name}.lora_b"], rope_rows_to_gguf(b, heads) if heads else b)  # (out, r)


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"bias": "lora_only"}, "base biases"),
        ({"lora_bias": True}, "lora_bias"),
        ({"alpha_pattern": {"q_proj": 8}}, "alpha_pattern"),
        ({"trainable_token_indices": [1, 2]}, "trainable_token_indices"),
        ({"fan_in_fan_out": True}, "fan_in_fan_out"),
        ({"peft_type": "PREFIX_TUNING"}, "prefix_tuning adapter"),
        ({"lora_alpha": 0}, "lora_alpha"),
    ],
)
def test_unconvertible_configs_are_one_line_naming_the_reason(config: dict[str, Any], reason: str) -> None:
    good = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "bias": "none", "use_rslora": True,
            "rank_pattern": {"q_proj": 4}}  # fmt: skip
    check_convertible(good, "ok")  # rsLoRA and per-module ranks convert
    with pytest.raises(BadInputError) as info:
        check_convertible({**good, **config}, "bad")
    message = str(info.value)
    assert reason in message and "\n" not in message and info.value.exit_code == 2
    assert message.startswith("Adapter 'bad' cannot be converted to a GGUF LoRA for llama.cpp:")


def test_weights_without_a_gguf_lora_form_are_refused(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    base = fake_base(tmp_path / "base.gguf")
    fake_adapter(tmp_path / "dora")
    magnitude = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"
    save_file({magnitude: np.ones(8, np.float32)}, str(tmp_path / "dora" / "adapter_model.safetensors"))
    with pytest.raises(BadInputError, match="lora_magnitude_vector.*has no GGUF LoRA form"):
        convert_lora(tmp_path / "dora", base, tmp_path / "out.gguf", adapter_id="dora")
    other = fake_base(tmp_path / "phi.gguf", arch="phi2")
    fake_adapter(tmp_path / "ok")
    with pytest.raises(BadInputError, match="is a 'phi2' model; GGUF LoRA conversion covers llama, qwen2"):
        convert_lora(tmp_path / "ok", other, tmp_path / "out.gguf", adapter_id="ok")
    assert not (tmp_path / "out.gguf").exists()
