"""Adapters on one loaded base model: each loaded once, then switched per call without copying weights.

`AdapterSwitch` owns the PEFT wrappers around a `LoadedModel`'s base; the registry checks (kind,
base, lineage, sha256) stay in runtime.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentkit.errors import BadInputError


@dataclass(frozen=True)
class Adapter:
    """A loaded adapter: the module that runs it, and the LoRA adapter the base's layers must run."""

    module: Any  # the shared LoRA PeftModel, or a VirtualTokens around this adapter's own PeftModel
    lora: str | None  # PEFT adapter name in the shared LoRA PeftModel; None: no LoRA layer active


class AdapterSwitch:
    """Every adapter loaded on one base, and the switch between them; callers hold the model's lock.

    LoRA adapters share one PeftModel: their layers are injected into the base's modules, and a switch
    changes which adapter those layers run. PEFT cannot add a prompt-learning adapter (prefix,
    prompt, P-Tuning) to that PeftModel (`add_adapter` refuses a second peft_type), so each one gets
    its own PeftModel around the same base object -- no weight copy -- and runs with no LoRA active.
    """

    def __init__(self, base: Any) -> None:
        self.base = base
        self._lora: Any = None  # peft.PeftModel holding every LoRA adapter, from the first one on
        # The LoRA adapters every tuner layer runs: [name] or [] (then a layer's forward is its base
        # layer's alone, as after PEFT deletes the last adapter). One list object, held by all layers.
        self._active: list[str] = []

    def load(self, path: str, adapter_id: str) -> Adapter:
        """Load the PEFT adapter folder at `path` onto the base (the caller caches the result)."""
        from peft import PeftConfig, PeftModel, PeftType
        from peft.tuners.tuners_utils import BaseTunerLayer

        config = PeftConfig.from_pretrained(path)
        merge = f"merge it into a base (`agentkit models merge {adapter_id}`), then use model='{adapter_id}-merged'."
        if config.peft_type in (PeftType.PREFIX_TUNING, PeftType.PROMPT_TUNING, PeftType.P_TUNING):
            module = PeftModel.from_pretrained(self.base, path, config=config, is_trainable=False)
            return Adapter(VirtualTokens(module.eval()), None)
        if config.peft_type != PeftType.LORA:
            raise BadInputError(
                f"Adapter {adapter_id!r} is a {config.peft_type.value} adapter; per-call switching covers "
                "LoRA, prefix / P-Tuning v2, prompt tuning and P-Tuning adapters.",
                fix=merge,
            )
        if config.modules_to_save or getattr(config, "trainable_token_indices", None):
            # Whole trained modules sit in PEFT wrappers with per-wrapper state this switch does not drive.
            raise BadInputError(
                f"Adapter {adapter_id!r} also trains whole modules (modules_to_save={config.modules_to_save}); "
                "per-call switching covers LoRA layers only.",
                fix=merge,
            )
        # Opaque PEFT names: registry ids like "my.lora" / "my_lora" or "lora" would collide or
        # clash with PEFT's "lora_" parameter prefix.
        name = f"agentkit{len(self._lora.peft_config) if self._lora is not None else 0}"
        if self._lora is None:
            self._lora = PeftModel.from_pretrained(
                self.base, path, adapter_name=name, config=config, is_trainable=False
            )
        else:
            self._lora.load_adapter(path, adapter_name=name, is_trainable=False)
        # Inference only: no adapter weight requires grad, so the switch below leaves exactly what
        # PEFT's set_adapter(name, inference_mode=True) leaves (it also resets requires_grad).
        self._lora.eval().requires_grad_(False)
        # Every tuner layer (210 for all-linear LoRA on SmolLM2: 30 blocks x 7 linears; a later
        # adapter may add layers) holds the one `_active` list, so a switch is one list assignment
        # instead of PEFT's walk over the model's ~2,700 modules (~10 ms, bench/hot_swap.py). PEFT
        # reads a layer's adapters through `active_adapters`, which returns a list as it is.
        for layer in self._lora.modules():
            if isinstance(layer, BaseTunerLayer):
                layer._active_adapter = self._active
        self._lora.base_model.active_adapter = self._active  # LoraModel's view, same list
        return Adapter(self._lora, name)

    def use(self, adapter: Adapter | None) -> Any:
        """Make the base run `adapter` (None: the bare base) and return the module to call."""
        lora = adapter.lora if adapter is not None else None
        self._active[:] = [lora] if lora else []
        if lora:
            self._lora.active_adapter = lora  # PeftModel's own (its config lookups), as set_adapter leaves it
        return adapter.module if adapter is not None else self.base


class VirtualTokens:
    """A prompt-learning adapter on the shared base: PEFT's forward, and the base's own `generate`
    with the adapter's virtual tokens passed in as inputs.

    Not PEFT's generate: PEFT 0.21 looks for the KV cache under `past_key_values` and for the prefill
    step by `cache_position`, which transformers 5.24 passes as `cache` and no longer passes. Its
    generate then re-inserts prompt-tuning tokens at every step and never inserts prefix keys/values:
    its output differs from greedy decoding through its own forward, which ours matches
    (tests/integration/test_hot_swap.py).
    """

    def __init__(self, peft_model: Any) -> None:
        import inspect

        from peft import PeftType

        self.peft = peft_model
        self.base = peft_model.get_base_model()  # the LoadedModel's base object itself
        config = peft_model.active_peft_config
        self.n_virtual: int = config.num_virtual_tokens
        # prefix_tuning and p_tuning_v2 prepend keys/values to every layer; prompt tuning and
        # P-Tuning prepend embeddings at the input.
        self.kv_prefix = config.peft_type == PeftType.PREFIX_TUNING
        # transformers 5.x renamed the cache argument; the old name still works there but warns.
        params = inspect.signature(type(self.base).forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """PEFT's forward, as in training: logits of prompt / P-Tuning include the virtual positions
        in front, (B, n_virtual + T, V), so index them from the end."""
        return self.peft(*args, **kwargs)

    def generate(
        self, input_ids: Any, attention_mask: Any, logits_processor: Any = None, **kwargs: Any
    ) -> Any:
        """Like the base's generate for `input_ids`: returns (B, T + new) ids that start with them."""
        import torch

        batch, n = input_ids.shape[0], self.n_virtual
        # generate() is told of n leading positions before the prompt, so positions, attention
        # mask and cache length agree with PEFT's forward. Their ids are fillers, copies of the
        # first prompt id (a repetition penalty then sees no new id); they are cut from the
        # output and hidden from our logits processors, which count generated tokens.
        ids = torch.cat([input_ids[:, :1].expand(batch, n), input_ids], dim=1)
        mask = torch.cat([attention_mask.new_ones(batch, n), attention_mask], dim=1)
        if self.kv_prefix:  # a DynamicCache already holding n positions on every layer
            virtual = {self._cache_arg: self.peft.get_prompt(batch_size=batch)}
        else:
            prompts = self.peft.get_prompt(batch_size=batch)  # (B, n, hidden)
            embeds = self.peft.word_embeddings(input_ids)  # (B, T, hidden)
            virtual = {"inputs_embeds": torch.cat([prompts.to(embeds.dtype), embeds], dim=1)}
        processors = [_AfterVirtual(p, n) for p in logits_processor or []] or None
        out = self.base.generate(
            input_ids=ids, attention_mask=mask, logits_processor=processors, **virtual, **kwargs
        )
        return out[:, n:]


class _AfterVirtual:
    """A logits processor that sees the ids without the n leading filler ids."""

    def __init__(self, processor: Any, n: int) -> None:
        self.processor, self.n = processor, n

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return self.processor(input_ids[:, self.n :], scores)
