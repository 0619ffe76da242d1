"""Packed batches on the built-in SmolLM2: a packed row gives the same logits and loss as its
examples run one by one (no attention or loss across examples), and a packed LoRA run learns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentkit.registry import Registry
from agentkit.registry.importer import copy_hf_folder
from agentkit.tuning import TuneConfig
from agentkit.tuning.data import ChatExample
from agentkit.tuning.packing import PACKED_SDPA, PackedCollator, packed_collator
from agentkit.tuning.tokenize import IGNORE, PadCollator, encode_chat
from agentkit.tuning.trainer import Run

pytestmark = pytest.mark.integration
BASE = "smollm2-135m-instruct"
CHATS = [
    ("Say the secret word for item 7.", "The secret word is banana-1."),
    ("What is 2 + 2?", "4."),
    ("Name a colour and say why you like it.", "Blue, because it is the colour of the sky at noon."),
]


# sdpa / eager: one (T, T) block-diagonal mask from the restarting position_ids; PACKED_SDPA: the
# attention `packed_collator` switches a model to, SDPA run per example from cu_seq_lens_q.
@pytest.mark.parametrize("attn", ["sdpa", "eager", PACKED_SDPA])
def test_packed_row_equals_its_examples_run_separately(
    registry: Registry, attn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.integrations import sdpa_attention

    path = registry.path(BASE)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="sdpa" if attn == PACKED_SDPA else attn
    ).eval()
    collator = packed_collator(model) if attn == PACKED_SDPA else PackedCollator()
    assert model.config._attn_implementation == attn
    # As loaded, the config asks for a KV cache; the packed batch must hold without Trainer turning it off.
    assert model.config.use_cache
    chats = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in CHATS]
    rows = [encode_chat(tokenizer, ChatExample(messages), 128) for messages in chats]
    lengths = [len(r["input_ids"]) for r in rows]

    packed = collator(rows)
    plain_sdpa, query_lengths = sdpa_attention.sdpa_attention_forward, []

    def spy(module, query, *args, **kwargs):
        query_lengths.append(query.shape[2])
        return plain_sdpa(module, query, *args, **kwargs)

    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", spy)  # what packed_sdpa calls
    with torch.no_grad():
        out = model(**packed)
    if attn == PACKED_SDPA:  # one SDPA call per example and layer, none over the whole row
        assert query_lengths == lengths * model.config.num_hidden_layers
    with torch.no_grad():
        alone = [model(**{k: torch.tensor([v]) for k, v in r.items()}, use_cache=False) for r in rows]
        padded = model(**PadCollator(tokenizer.pad_token_id)(rows))
        run_on = model(input_ids=packed["input_ids"], use_cache=False).logits[0]  # no position restart

    separate_logits = torch.cat([o.logits[0] for o in alone])  # (T, vocab), T = sum(lengths)
    torch.testing.assert_close(out.logits[0], separate_logits, atol=2e-4, rtol=1e-4)
    # Loss: the mean over every scored token, each example alone weighted by its scored tokens
    # (labels[1:], as the model shifts them) -- and the same as a right-padded batch.
    scored = [sum(x != IGNORE for x in r["labels"][1:]) for r in rows]
    separate_loss = sum(o.loss * n for o, n in zip(alone, scored, strict=True)) / sum(scored)
    torch.testing.assert_close(out.loss, separate_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, padded.loss, atol=1e-5, rtol=1e-5)
    # The check has teeth: without restarting positions, later examples attend to earlier ones.
    # (Padded and single rows above went through PACKED_SDPA's fallback to plain SDPA.)
    later = slice(lengths[0], None)
    assert (run_on[later] - separate_logits[later]).abs().max() > 1.0


def test_packed_lora_run_learns_and_moves_only_lora_weights(tmp_path: Path, registry: Registry) -> None:
    home = Registry(tmp_path / "home")
    home.create_entry(BASE, lambda s: copy_hf_folder(registry.path(BASE), s, link=True))
    rows = [{"instruction": f"Say the secret word for item {i}.", "output": f"The secret word is banana-{i % 3}."}
            for i in range(16)]  # fmt: skip
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    config = TuneConfig.model_validate({
        "base": BASE, "method": "lora", "lora": {"r": 8, "alpha": 16},
        "data": {"train": str(data), "eval_fraction": 0.25},
        "train": {"learning_rate": 2e-3, "batch_size": 4, "max_length": 96, "max_steps": 6},
        "output": "packed-lora",
    })  # fmt: skip
    assert config.train.packing  # the default
    run = Run.prepare(config, home)
    assert isinstance(run.trainer.data_collator, PackedCollator)
    assert run.model.get_base_model().config._attn_implementation == PACKED_SDPA
    frozen = {n: p.detach().clone() for n, p in run.model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in run.model.named_parameters() if p.requires_grad}
    metrics = run.fit()

    assert metrics["steps"] == 6 and metrics["train_loss_last"] < metrics["train_loss_first"]
    assert "eval_loss" in metrics  # evaluation runs on packed batches too
    params = dict(run.model.named_parameters())
    assert all(params[n].detach().equal(before) for n, before in frozen.items())
    assert trainable and all(not params[n].detach().equal(before) for n, before in trainable.items())
