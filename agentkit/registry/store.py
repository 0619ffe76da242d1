"""The on-disk registry of base models and adapters under `$AGENTKIT_HOME`.

Layout (also in README):  `models/<id>/` (card.json + weights + tokenizer), `tmp/` (staging, each
folder beside the `.owner` lock of its writer; see staging.py), `locks/` (one lock file per id plus
`registry.lock` and `aliases.lock`), `aliases.json` (aliases.py). Entries appear by atomic rename only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError, EntryExistsError, IntegrityError, UnknownModelError
from agentkit.registry import aliases as _aliases
from agentkit.registry.card import CARD_FILE, ModelCard, validate_entry_id
from agentkit.registry.files import hash_weights, sha256_file, write_json_atomic  # noqa: F401 - also imported from here
from agentkit.registry.staging import staging_dir


def default_home() -> Path:
    return Path(os.environ.get("AGENTKIT_HOME") or Path.home() / ".agentkit").expanduser()


class Registry:
    """A registry rooted at a folder. Construction does no I/O; folders are made on first write."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root else default_home()

    @classmethod
    def default(cls) -> Registry:
        return cls(default_home())

    # ---- paths ------------------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def entry_dir(self, entry_id: str) -> Path:
        return self.models_dir / validate_entry_id(entry_id)

    @contextmanager
    def _lock(self, name: str = "registry", timeout: float = 600) -> Iterator[None]:
        from filelock import FileLock

        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with FileLock(str(locks / f"{name}.lock"), timeout=timeout):
            yield

    # ---- reading ----------------------------------------------------------------------------
    def ids(self) -> list[str]:
        """Ids of complete entries (a folder without a card is not an entry)."""
        if not self.models_dir.is_dir():
            return []
        return sorted(p.name for p in self.models_dir.iterdir() if (p / CARD_FILE).is_file())

    def list(self) -> list[ModelCard]:
        """The cards of the complete entries. An entry whose card.json does not read is left out
        with a warning that names the file (`card(id)` raises the same error), so one damaged
        entry does not hide the others."""
        cards = []
        for entry_id in self.ids():
            try:
                cards.append(self._read_card(entry_id))
            except IntegrityError as exc:
                import logging

                logging.getLogger("agentkit.registry").warning("%s", exc.one_line())
        return cards

    def __contains__(self, entry_id: str) -> bool:
        try:
            return (self.entry_dir(entry_id) / CARD_FILE).is_file()
        except BadInputError:  # not a valid id, so not an entry
            return False

    def card(self, entry_id: str) -> ModelCard:
        """The card of `entry_id`, materialising a built-in model on first use."""
        self.ensure(entry_id)
        return self._read_card(entry_id)

    def path(self, entry_id: str) -> Path:
        self.ensure(entry_id)
        return self.entry_dir(entry_id)

    def ensure(self, entry_id: str, progress: Callable[[str], None] | None = None) -> None:
        """Make sure `entry_id` exists: built-ins are converted once, anything else must exist."""
        validate_entry_id(entry_id)
        if entry_id in self:
            return
        from agentkit.registry.builtins import builtin_specs

        spec = builtin_specs().get(entry_id)
        if spec is None:
            raise self._unknown(entry_id, fix="pick one of those, or add yours with `agentkit models import PATH`.")
        spec.check_installed()
        self.create_entry(entry_id, lambda stage: spec.materialize(stage, progress), exist_ok=True)

    def _read_card(self, entry_id: str) -> ModelCard:
        path = self.entry_dir(entry_id) / CARD_FILE  # validates the id: no path escapes
        try:
            return ModelCard.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise self._unknown(entry_id, fix="run `agentkit models list` to see the ids.", builtins=False) from None
        except (ValueError, UnicodeDecodeError) as exc:  # pydantic's ValidationError is a ValueError
            errors = getattr(exc, "errors", None)
            first = errors()[0] if callable(errors) else {"loc": (), "msg": str(exc)}
            where = ".".join(str(part) for part in first["loc"])
            raise IntegrityError(
                f"{path} is not a readable model card: {where + ': ' if where else ''}{first['msg']}.",
                fix=f"restore the file from a copy, or drop the entry with `agentkit models rm {entry_id}`.",
            ) from None

    def _unknown(self, entry_id: str, *, fix: str, builtins: bool = True) -> UnknownModelError:
        """The one unknown-id error: what the registry has (entries, built-ins) and its aliases."""
        known = set(self.ids())
        if builtins:
            from agentkit.registry.builtins import builtin_specs

            known |= set(builtin_specs())
        named = _aliases.describe_aliases(self)
        return UnknownModelError(
            f"Unknown model id {entry_id!r}; the registry at {self.root} has: "
            f"{', '.join(sorted(known)) or 'nothing yet'}" + (f"; aliases: {named}." if named else "."),
            fix=fix,
        )

    def load_key(self, card: ModelCard) -> tuple[str, str, tuple[str, ...]]:
        """Identity of loaded weights for in-process caches: a re-imported id gets a new key."""
        return (str(self.root.resolve()), card.id, tuple(sorted(card.weights.values())))

    def verify(self, entry_id: str) -> ModelCard:
        """Re-hash the weights and compare with the card; raises IntegrityError on a mismatch."""
        card = self.card(entry_id)
        folder = self.entry_dir(entry_id)
        for name, expected in card.weights.items():
            file = folder / name
            actual = sha256_file(file) if file.is_file() else "missing"
            if actual != expected:
                raise IntegrityError(
                    f"Weights {file} of {entry_id!r} do not match the sha256 in its card "
                    f"(expected {expected[:12]}..., found {actual[:12]}...); nothing was loaded.",
                    fix=f"restore the file, or `agentkit models rm {entry_id}` and import it again.",
                )
        return card

    # ---- writing ----------------------------------------------------------------------------
    def create_entry(
        self,
        entry_id: str,
        write: Callable[[Path], dict[str, Any]],
        *,
        exist_ok: bool = False,
    ) -> ModelCard:
        """Stage a new entry with `write(stage_dir) -> card fields`, then publish it atomically.

        A per-id lock serialises writers of the same id, so two processes importing one model
        convert it once; the second finds the finished entry (exist_ok) or gets EntryExistsError.
        """
        validate_entry_id(entry_id)
        if _aliases.alias_target(self, entry_id) is not None:  # an id must never hide behind an alias
            raise EntryExistsError(
                f"Registry id {entry_id!r} is taken by an alias (see `agentkit models aliases`).",
                fix="choose another with --id.",
            )
        with self._lock(f"entry-{entry_id}"):
            if entry_id in self:
                if exist_ok:
                    return self._read_card(entry_id)
                raise EntryExistsError(
                    f"Registry id {entry_id!r} is taken.",
                    fix=f"choose another with --id, or `agentkit models rm {entry_id}` first.",
                )
            # Owned staging: a writer killed mid-conversion leaves a folder the next write removes.
            with staging_dir(self.root, f"entry-{entry_id}") as staging:
                fields = write(staging)
                card = ModelCard(id=entry_id, weights=hash_weights(staging), **fields)
                write_json_atomic(staging / CARD_FILE, card.model_dump(mode="json"))
                with self._lock():
                    self.models_dir.mkdir(parents=True, exist_ok=True)
                    os.rename(staging, self.entry_dir(entry_id))
            return card

    def update_card(self, entry_id: str, **changes: Any) -> ModelCard:
        """Replace card fields (metrics, lineage) atomically; weights hashes cannot change here."""
        if "weights" in changes or "id" in changes:
            raise ValueError("update_card cannot change `id` or `weights`; create a new entry.")
        return self._change_card(entry_id, lambda _card: changes)

    def _change_card(self, entry_id: str, change: Callable[[ModelCard], dict[str, Any]]) -> ModelCard:
        """Read, change and rewrite one card under its entry lock: `change(card) -> fields` sees
        the card as it is now, so two writers appending to a list both land."""
        validate_entry_id(entry_id)
        with self._lock(f"entry-{entry_id}"):
            card = self._read_card(entry_id)
            changes = change(card)
            if "weights" in changes or "id" in changes:
                raise ValueError("a card change cannot touch `id` or `weights`; create a new entry.")
            card = card.model_copy(update=changes)
            card = ModelCard.model_validate(card.model_dump())  # re-validate the merged fields
            write_json_atomic(self.entry_dir(entry_id) / CARD_FILE, card.model_dump(mode="json"))
        return card

    def remove(self, entry_id: str) -> None:
        """Delete an entry: renamed out of `models/` first, so it vanishes from `list` at once."""
        validate_entry_id(entry_id)
        if entry_id not in self:
            target = _aliases.alias_target(self, entry_id)
            if target is not None:
                raise BadInputError(
                    f"{entry_id!r} is an alias (of {target!r}), not an entry; "
                    "removing it would not free anything.",
                    fix=f"remove the entry itself (`agentkit models rm {target}`) once no alias points at it.",
                )
            self._read_card(entry_id)  # raises UnknownModelError with the list of ids
        dependants = [c.id for c in self.list() if c.base == entry_id]
        if dependants:
            raise EntryExistsError(
                f"{entry_id!r} is the base of adapters {', '.join(dependants)}.",
                fix="remove those adapters first.",
            )
        # The trash is owned staging too: a `rm` killed while deleting is finished by the next write.
        # The aliases lock is held from the check to the rename, so no promote lands in between.
        with staging_dir(self.root, f"trash-{entry_id}", create=False) as trash:
            with self._lock("aliases"):
                serving = _aliases.aliases_of(self, entry_id)
                if serving:
                    first = serving[0]
                    raise BadInputError(
                        f"{entry_id!r} is served by alias {', '.join(repr(a) for a in serving)}; "
                        "it cannot be removed.",
                        fix=f"`agentkit models rollback {first}` or `agentkit models promote ID --alias {first}` "
                        f"to point it elsewhere, then remove {entry_id}.",
                    )
                with self._lock(f"entry-{entry_id}"), self._lock():
                    os.rename(self.entry_dir(entry_id), trash)

    # ---- aliases (aliases.py) ---------------------------------------------------------------------
    def promote(self, entry_id: str, alias: str, *, evaluation: dict[str, Any] | None = None,
                beat: dict[str, Any] | None = None) -> str | None:  # fmt: skip
        """Point `alias` at chat entry `entry_id`, record `evaluation` (and the one it `beat`) on its
        card and make it `champion`; returns the previous target."""
        return _aliases.promote(self, entry_id, alias, evaluation=evaluation, beat=beat)

    def mark_candidate(self, entry_id: str, evaluation: dict[str, Any] | None = None) -> ModelCard:
        """Record an evaluation that did not promote `entry_id`; stage `candidate`."""
        return _aliases.mark_candidate(self, entry_id, evaluation)

    def rollback(self, alias: str) -> str:
        """Point `alias` back at its previous target and return it."""
        return _aliases.rollback(self, alias)

    def aliases(self) -> dict[str, dict[str, Any]]:
        """{alias: {target, since, history: [{target, since, until}, ...]}} as JSON-ready dicts."""
        found = _aliases.read_aliases(self).aliases
        return {a: rec.model_dump(mode="json") for a, rec in sorted(found.items())}

    def resolve(self, name: str) -> str:
        """An alias -> its target id; an entry or built-in id -> itself; else UnknownModelError."""
        return _aliases.resolve(self, name)

    def resolve_chat(self, model: str, adapter: str | None = None) -> tuple[str, str | None]:
        """(base id, adapter id) that `{model, adapter}` runs now, with aliases resolved."""
        return _aliases.resolve_chat(self, model, adapter)
