"""Loading a registry entry's weights and tokenizer: the one place that says how (safetensors only,
never a download, float32 on the CPU, a pad token where the tokenizer has none)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_weights(path: str | Path, auto_class: Any, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained(path)` (AutoModelForCausalLM, AutoModelForSequenceClassification, ...)
    from safetensors only, offline, in float32; `kwargs` go to from_pretrained (num_labels, ...)."""
    import torch

    options = {"use_safetensors": True, "local_files_only": True, "dtype": torch.float32, **kwargs}
    return auto_class.from_pretrained(str(path), **options)


def load_tokenizer(path: str | Path, *, pad: bool = True) -> Any:
    """The tokenizer saved in an entry (its chat template included), offline; `pad`: the EOS token
    stands in for a missing pad token, as batching needs one."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if pad and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
