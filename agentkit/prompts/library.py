"""`PromptLibrary` and `load_prompt`: find `name@version` in the built-in, user and project folders.
A file's name is its address (`rag_answer@2.yaml`; no `@N` means version 1); later folders override."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from pathlib import Path

from agentkit.errors import BadInputError
from agentkit.names import PROMPT_NAME
from agentkit.prompts.spec import PromptSpec, parse_prompt_file
from agentkit.prompts.template import LibraryPrompt

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
PROMPT_SUFFIXES = (".yaml", ".yml", ".jinja")
_STEM_RE = re.compile(rf"(?P<name>{PROMPT_NAME.pattern.pattern})(?:@(?P<version>[1-9][0-9]{{0,5}}))?")
_REF_RE = re.compile(r"(?P<name>[^@\s]+)(?:@(?P<version>[^@\s]+))?")

# Parsed specs keyed by (path, mtime_ns, size): an edited file is re-read, an unchanged one is not.
_PARSED: dict[tuple[str, int, int], PromptSpec] = {}
_PARSED_LOCK = threading.Lock()


def user_prompt_dir() -> Path:
    from agentkit.registry import default_home

    return default_home() / "prompts"


def parse_ref(ref: str) -> tuple[str, int | None]:
    """`"rag_answer"` / `"rag_answer@latest"` -> (name, None); `"rag_answer@2"` -> (name, 2)."""
    match = _REF_RE.fullmatch(ref.strip()) if isinstance(ref, str) else None
    version = match.group("version") if match else None
    if match is None or (version not in (None, "latest") and not version.isdigit()):
        raise BadInputError(
            f"Invalid prompt reference {ref!r}.",
            fix="write NAME, NAME@latest or NAME@VERSION, e.g. 'rag_answer' or 'rag_answer@1'.",
        )
    return match.group("name"), (int(version) if version and version.isdigit() else None)


class PromptLibrary:
    """Prompt folders searched in order; a later folder's `name@version` replaces an earlier one's.

    Construction does no I/O; folders that do not exist are simply empty.
    """

    def __init__(self, folders: Sequence[str | Path]) -> None:
        self.folders = [Path(f).expanduser() for f in folders]

    @classmethod
    def default(cls, *project_folders: str | Path) -> PromptLibrary:
        """Built-ins, then `$AGENTKIT_HOME/prompts/`, then any project folders (e.g. `./prompts`)."""
        return cls([BUILTIN_DIR, user_prompt_dir(), *project_folders])

    # ---- the index: file names only, so one broken file does not hide the others -------------
    def _index(self) -> dict[str, dict[int, Path]]:
        index: dict[str, dict[int, Path]] = {}
        for folder in self.folders:
            seen: dict[tuple[str, int], Path] = {}
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                if path.name.startswith(".") or path.suffix not in PROMPT_SUFFIXES or not path.is_file():
                    continue
                match = _STEM_RE.fullmatch(path.stem)
                if match is None:
                    raise BadInputError(
                        f"{path}: {path.stem!r} is not a prompt address.",
                        fix=f"rename it to <name>{path.suffix} or <name>@<version>{path.suffix}, "
                        "the name in a-z, 0-9, '_' or '-'.",
                    )
                key = (match.group("name"), int(match.group("version") or 1))
                if key in seen:
                    raise BadInputError(
                        f"{seen[key]} and {path} both define {key[0]}@{key[1]}.",
                        fix="delete one, or give one a new version (<name>@<version>.yaml).",
                    )
                seen[key] = path
                index.setdefault(key[0], {})[key[1]] = path  # later folders override
        return index

    def names(self) -> list[str]:
        return sorted(self._index())

    def versions(self, name: str) -> list[int]:
        return sorted(self._index().get(name, {}))

    def path(self, ref: str) -> Path:
        """The file that defines `ref` (`name`, `name@latest` or `name@version`)."""
        return self._resolve(ref)[2]

    def _resolve(self, ref: str) -> tuple[str, int, Path]:
        name, version = parse_ref(ref)
        index = self._index()
        if name not in index:
            where = ", ".join(str(f) for f in self.folders)
            raise BadInputError(
                f"Unknown prompt {name!r}; available: {', '.join(sorted(index)) or 'none'} (searched {where}).",
                fix=f"use one of those names, or add {name}.yaml to {user_prompt_dir()}.",
            )
        versions = index[name]
        if version is None:
            version = max(versions)
        if version not in versions:
            listed = ", ".join(str(v) for v in sorted(versions))
            raise BadInputError(
                f"Prompt {name!r} has no version {version}; versions: {listed}.",
                fix=f"use {name}@{max(versions)} (or just {name!r} for the latest), or add {name}@{version}.yaml.",
            )
        return name, version, versions[version]

    def spec(self, ref: str) -> PromptSpec:
        name, version, path = self._resolve(ref)
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with _PARSED_LOCK:
            if key not in _PARSED:
                _PARSED[key] = parse_prompt_file(path, name, version)
            return _PARSED[key]

    def load(self, ref: str) -> LibraryPrompt:
        return self.spec(ref).to_chat_prompt()


def load_prompt(ref: str, *, folders: Sequence[str | Path] = ()) -> LibraryPrompt:
    """The `ChatPromptTemplate` for `ref`: `"rag_answer"` (latest version) or `"rag_answer@1"`.

    `folders` are project prompt folders searched after the built-ins and `$AGENTKIT_HOME/prompts/`.

    Example:
        ```python
        chain = load_prompt("classify") | LocalChatModel(max_new_tokens=8) | StrOutputParser()
        chain.invoke({"text": "My card was charged twice.", "labels": ["billing", "shipping"]})
        ```
    """
    return PromptLibrary.default(*folders).load(ref)
