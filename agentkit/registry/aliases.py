"""Aliases: stable names (`agent-default`) that point at a registry entry, moved by promote and
rollback. `<root>/aliases.json` holds each alias's target and its earlier targets; cards record why.

Lock order: `aliases` before `entry-<id>` before `registry`, never the reverse, so promote, rollback
and `models rm` (which takes all three) cannot deadlock one another.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentkit.errors import BadInputError
from agentkit.names import REGISTRY_ID, NameRule
from agentkit.registry.card import EntryKind, EvaluationEvent, EvaluationRecord, ModelCard, ModelTask, Stage

if TYPE_CHECKING:
    from agentkit.registry.store import Registry

ALIASES_FILE = "aliases.json"
ALIASES_VERSION = 1
# Same characters as a registry id: an alias stands where an id stands (goal.yaml `model:`).
ALIAS = NameRule("alias", REGISTRY_ID.pattern, REGISTRY_ID.rule)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class PastTarget(BaseModel):
    """An earlier target of an alias and when it was served."""

    model_config = ConfigDict(extra="forbid")

    target: str
    since: datetime
    until: datetime


class Alias(BaseModel):
    """The current target, and the earlier ones, oldest first (rollback pops the last)."""

    model_config = ConfigDict(extra="forbid")

    target: str
    since: datetime = Field(default_factory=_now)
    history: list[PastTarget] = Field(default_factory=list)


class AliasFile(BaseModel):
    """The whole of `aliases.json`."""

    model_config = ConfigDict(extra="forbid")

    version: int = ALIASES_VERSION
    aliases: dict[str, Alias] = Field(default_factory=dict)


# ---- the file --------------------------------------------------------------------------------
def aliases_path(registry: Registry) -> Path:
    return registry.root / ALIASES_FILE


def read_aliases(registry: Registry) -> AliasFile:
    """The aliases on disk (none when the file is absent). No lock: the file is only ever replaced
    whole by a rename, so a reader sees the old or the new version."""
    path = aliases_path(registry)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AliasFile()
    try:
        return AliasFile.model_validate_json(text)
    except ValidationError as exc:
        raise BadInputError(
            f"{path} is not a valid aliases file ({exc.error_count()} error(s): {exc.errors()[0]['msg']}).",
            fix=f"restore {path} from a backup, or delete it to drop every alias.",
        ) from None


def _write_aliases(registry: Registry, data: AliasFile) -> None:
    from agentkit.registry.store import write_json_atomic

    registry.root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(aliases_path(registry), data.model_dump(mode="json"))


def alias_target(registry: Registry, name: str) -> str | None:
    """The target of alias `name`, or None when `name` is no alias."""
    entry = read_aliases(registry).aliases.get(name)
    return entry.target if entry else None


def aliases_of(registry: Registry, entry_id: str) -> list[str]:
    """The aliases that point at `entry_id` now."""
    return sorted(a for a, rec in read_aliases(registry).aliases.items() if rec.target == entry_id)


def describe_aliases(registry: Registry) -> str:
    """`a -> x, b -> y` for error messages; empty when there are none or the file is unreadable."""
    try:
        found = read_aliases(registry).aliases
    except BadInputError:  # an error message must not fail on a second problem
        return ""
    return ", ".join(f"{a} -> {rec.target}" for a, rec in sorted(found.items()))


# ---- checks ----------------------------------------------------------------------------------
def _json_object(value: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    """`value` as plain JSON (numpy / torch scalars become numbers), or BadInputError."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadInputError(f"`{name}` must be a dict of results, not {type(value).__name__}.",
                            fix=f"pass {name}={{'metric': value, ...}}.")  # fmt: skip

    def scalar(item: Any) -> Any:
        if hasattr(item, "item"):  # numpy / torch 0-d values: float(np.float32) round-trips
            return item.item()
        raise TypeError(f"{type(item).__name__} is not JSON")

    try:
        return json.loads(json.dumps(value, default=scalar))
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"`{name}` cannot be stored as JSON: {exc}.",
                            fix="pass numbers, strings, lists and dicts only.") from None  # fmt: skip


def _chat_card(registry: Registry, entry_id: str) -> ModelCard:
    """The card of a promotable entry: it exists (a built-in is converted) and it can chat."""
    card = registry.card(entry_id)  # UnknownModelError lists the ids and aliases
    if card.task is not ModelTask.CAUSAL_LM:
        raise BadInputError(
            f"{entry_id!r} is a {card.task.value} {card.kind.value}; an alias serves chat models.",
            fix="promote a causal_lm base or adapter (`agentkit models list` shows each task).",
        )
    return card


def _check_alias_name(registry: Registry, alias: str) -> str:
    from agentkit.registry.builtins import builtin_specs

    ALIAS.check(alias)
    if alias in registry or alias in builtin_specs():
        raise BadInputError(
            f"Alias {alias!r} is the id of a registry entry; an alias must not hide an id.",
            fix="choose another alias name, e.g. agent-default.",
        )
    return alias


def _unknown_alias(registry: Registry, alias: str, known: AliasFile) -> BadInputError:
    names = ", ".join(sorted(known.aliases)) or "none yet"
    return BadInputError(
        f"No alias {alias!r} in the registry at {registry.root}; the aliases are: {names}.",
        fix="run `agentkit models aliases`, or create one with `agentkit models promote ID --alias NAME`.",
    )


# ---- card records ----------------------------------------------------------------------------
def _record(registry: Registry, entry_id: str, record: EvaluationRecord, stage: Stage | None) -> ModelCard:
    """Append `record` to the card and set `stage` (None: keep it), in one locked card write."""

    def change(card: ModelCard) -> dict[str, Any]:
        update: dict[str, Any] = {"evaluations": [*card.evaluations, record]}
        if stage is not None:
            update["stage"] = stage
        return update

    return registry._change_card(entry_id, change)


def _retire_if_unaliased(registry: Registry, entry_id: str, data: AliasFile) -> None:
    """An entry that no alias points at any more stops being champion."""
    if entry_id in registry and not any(rec.target == entry_id for rec in data.aliases.values()):
        registry._change_card(entry_id, lambda card: {"stage": Stage.RETIRED} if card.stage is Stage.CHAMPION else {})  # fmt: skip


# ---- operations ------------------------------------------------------------------------------
def promote(registry: Registry, entry_id: str, alias: str, *, evaluation: dict[str, Any] | None = None,
            beat: dict[str, Any] | None = None) -> str | None:  # fmt: skip
    """Point `alias` at `entry_id`; returns the previous target (None for a new alias).

    Promoting the current target again records the evaluation and leaves the history as it is, so
    a rollback never lands on the entry it leaves.
    """
    evaluation, beat = _json_object(evaluation, "evaluation"), _json_object(beat, "beat")
    _check_alias_name(registry, alias)
    _chat_card(registry, entry_id)  # before the lock: a built-in may take ~20 s to convert
    with registry._lock("aliases"):
        _chat_card(registry, entry_id)  # still there: `models rm` takes this lock too
        data = read_aliases(registry)
        current = data.aliases.get(alias)
        previous = current.target if current else None
        now = _now()
        if current is None:
            data.aliases[alias] = Alias(target=entry_id, since=now)
        elif previous != entry_id:
            current.history.append(PastTarget(target=current.target, since=current.since, until=now))
            current.target, current.since = entry_id, now
        # The card first, the alias file last: the alias moves only once the card says why.
        record = EvaluationRecord(event=EvaluationEvent.PROMOTED, alias=alias, time=now,
                                  evaluation=evaluation, beat=beat)  # fmt: skip
        _record(registry, entry_id, record, Stage.CHAMPION)
        _write_aliases(registry, data)
        if previous and previous != entry_id:
            _retire_if_unaliased(registry, previous, data)
    return previous


def mark_candidate(registry: Registry, entry_id: str, evaluation: dict[str, Any] | None = None) -> ModelCard:
    """Record an evaluation that did not promote `entry_id`. An entry that an alias serves keeps
    its `champion` stage (a re-evaluation of the champion is a record, not a demotion)."""
    evaluation = _json_object(evaluation, "evaluation")
    registry.card(entry_id)  # UnknownModelError first
    with registry._lock("aliases"):  # so the champion check cannot race a promote
        serving = bool(aliases_of(registry, entry_id))
        record = EvaluationRecord(event=EvaluationEvent.CANDIDATE, evaluation=evaluation)
        return _record(registry, entry_id, record, None if serving else Stage.CANDIDATE)


def rollback(registry: Registry, alias: str) -> str:
    """Point `alias` back at its previous target; returns that target."""
    ALIAS.check(alias)
    with registry._lock("aliases"):
        data = read_aliases(registry)
        current = data.aliases.get(alias)
        if current is None:
            raise _unknown_alias(registry, alias, data)
        if not current.history:
            raise BadInputError(
                f"Alias {alias!r} has no earlier target to roll back to; it has pointed at "
                f"{current.target!r} since {current.since.isoformat(timespec='seconds')}.",
                fix=f"point it elsewhere with `agentkit models promote ID --alias {alias}`.",
            )
        earlier = current.history[-1]
        if earlier.target not in registry:
            raise BadInputError(
                f"Alias {alias!r} would roll back to {earlier.target!r}, "
                "which was removed from the registry.",
                fix=f"point it at an entry that exists with `agentkit models promote ID --alias {alias}`.",
            )
        left = current.target
        now = _now()
        current.history.pop()
        current.target, current.since = earlier.target, now
        restored = EvaluationRecord(event=EvaluationEvent.RESTORED, alias=alias, time=now)
        _record(registry, earlier.target, restored, Stage.CHAMPION)
        _write_aliases(registry, data)
        if left in registry:
            rolled_back = EvaluationRecord(event=EvaluationEvent.ROLLED_BACK, alias=alias, time=now)
            _record(registry, left, rolled_back, None)
            _retire_if_unaliased(registry, left, data)
    return earlier.target


def resolve(registry: Registry, name: str) -> str:
    """An alias -> its target id; an entry or built-in id -> itself; else UnknownModelError."""
    REGISTRY_ID.check(name)  # aliases follow the same rule, so this refuses only what neither can be
    target = alias_target(registry, name)
    if target is not None:
        return target
    from agentkit.registry.builtins import builtin_specs

    if name in registry or name in builtin_specs():
        return name
    raise registry._unknown(name, fix="pick one of those, or add yours with `agentkit models import PATH`.")


def resolve_chat(registry: Registry, model: str, adapter: str | None = None) -> tuple[str, str | None]:
    """(base id, adapter id) that a chat spec `{model, adapter}` runs, aliases resolved now.

    An alias of an adapter runs as {model: its base, adapter: it}; an alias of a base as that base.
    Names that are not aliases pass through untouched (their checks happen where they load).
    """
    target = alias_target(registry, model)
    if target is not None:
        # A built-in that was never converted is a base: no need to convert it just to know that.
        card = registry._read_card(target) if target in registry else None
        if card is not None and card.kind is EntryKind.ADAPTER:
            if adapter is not None:
                raise BadInputError(
                    f"Model {model!r} is an alias of adapter {target!r}, "
                    f"so it cannot take adapter {adapter!r} too.",
                    fix=f"drop `adapter`, or set `model` to a base id (that of {model!r} is {card.base!r}).",
                )
            return str(card.base), target
        model = target
    if adapter is not None:
        adapter_target = alias_target(registry, adapter)
        if adapter_target is not None:
            card = registry._read_card(adapter_target) if adapter_target in registry else None
            if card is None or card.kind is not EntryKind.ADAPTER:
                raise BadInputError(
                    f"Adapter {adapter!r} is an alias of {adapter_target!r}, which is not an adapter.",
                    fix=f"use it as the model instead: `model: {adapter}` without `adapter`.",
                )
            adapter = adapter_target
    return model, adapter
