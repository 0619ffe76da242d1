"""`lora.init_adapter`: a LoRA run that continues from a registered LoRA adapter -- the registry
checks (before any weights load) and the load that makes the adapter's weights the starting point."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentkit.errors import BadInputError
from agentkit.registry import EntryKind, ModelCard, Registry
from agentkit.tuning.lora.config import WEIGHT_SHAPING_FIELDS, LoraTuneConfig

if TYPE_CHECKING:
    from agentkit.tuning.config import TuneConfig

_WEIGHTS = "adapter_model.safetensors"  # safetensors only: PEFT would fall back to a pickled .bin


def resolve_init_adapter(config: TuneConfig, registry: Registry) -> tuple[TuneConfig, ModelCard | None]:
    """`config` with its lora block continuing from `lora.init_adapter` (that adapter's settings and
    folder) and the adapter's card; `config` as it is and None when the run starts a fresh LoRA."""
    lora = config.method_config
    if not isinstance(lora, LoraTuneConfig) or lora.init_adapter is None:
        return config, None
    name = lora.init_adapter
    fix = f"set lora.init_adapter to a LoRA adapter of {config.base} (`agentkit models list`), or remove it."
    where = f"lora.init_adapter: {name!r}"
    if name not in registry:
        raise BadInputError(f"{where} is not in the registry at {registry.root}.", fix=fix)
    card = registry.card(name)
    settings = _lora_settings(card)
    if card.kind is not EntryKind.ADAPTER or settings is None:
        raise BadInputError(
            f"{where} is not a LoRA adapter (kind {card.kind.value}, method {card.method!r}).",
            fix=fix,
        )
    if card.base != config.base or card.task.value != config.task:
        raise BadInputError(
            f"{where} is a {card.task.value} adapter of base {card.base!r}; "
            f"this run tunes {config.base!r} for {config.task}.",
            fix=fix,
        )
    if _WEIGHTS not in card.weights:
        raise BadInputError(f"{where} has no {_WEIGHTS}.", fix=fix)
    for field in sorted(lora.model_fields_set & set(WEIGHT_SHAPING_FIELDS)):  # written in tune.yaml
        if _same(getattr(lora, field)) != _same(settings[field]):
            raise BadInputError(
                f"lora.{field}: {getattr(lora, field)!r}, but init_adapter {name!r} was trained with "
                f"{settings[field]!r}, and a continued LoRA keeps its adapter's {field}.",
                fix=f"remove lora.{field}, or remove lora.init_adapter to start a fresh LoRA.",
            )
    registry.verify(name)  # re-hash the weights we are about to train on (after the cheap checks)
    continuing = lora.continuing(settings, registry.entry_dir(name))
    return config.model_copy(update={"method_config": continuing}), card


def load_init_adapter(model: Any, config: LoraTuneConfig) -> Any:
    """`model` wrapped in the init adapter, trainable. PEFT rebuilds the LoRA layers from the
    adapter's own adapter_config.json and loads adapter_model.safetensors into them."""
    import warnings

    from peft import LoraConfig, PeftModel

    if config.init_dir is None:
        raise RuntimeError("lora.init_adapter is unresolved: resolve_init_adapter first (Run.prepare does).")
    peft_config = LoraConfig.from_pretrained(str(config.init_dir))
    peft_config.lora_dropout = config.dropout  # a training setting, not part of the weights
    with warnings.catch_warnings():
        # PEFT only warns when saved keys do not reach every LoRA layer; those layers would start
        # fresh (B = 0), so the run would quietly not be a continuation.
        warnings.filterwarnings("error", message=".*missing adapter keys")
        try:
            return PeftModel.from_pretrained(model, config.init_dir, is_trainable=True, config=peft_config)
        except UserWarning as exc:
            raise BadInputError(
                f"lora.init_adapter: {config.init_adapter!r} does not fit the base's layers "
                f"({str(exc)[:200]}).",
                fix="use an adapter trained on this base, or remove lora.init_adapter.",
            ) from None


def _lora_settings(card: ModelCard) -> dict[str, Any] | None:
    """The LoRA settings an adapter was tuned with, as written in its tune.yaml (lineage), or None
    when it is not a LoRA: method lora, or sft with `peft: lora` (its `lora:` block; flat in sft
    cards written before LoRA settings had one shape)."""
    block = card.lineage.method_block(card.method)
    if block is None:
        return None
    if card.method == "sft":
        if block.get("peft", "lora") != "lora":
            return None
        block = block.get("lora", block)
    elif card.method != "lora":
        return None
    defaults = LoraTuneConfig()
    return {field: block.get(field, getattr(defaults, field)) for field in WEIGHT_SHAPING_FIELDS}


def _same(value: Any) -> Any:
    """Module lists compare as sets: [q_proj, v_proj] and [v_proj, q_proj] are one LoRA."""
    return sorted(value) if isinstance(value, list) else value
