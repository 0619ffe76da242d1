"""The workspace file tools: read_file, write_file, list_files, each confined to the run's workspace.

Absolute paths, `..` that climbs out, and symlinks (the file or any parent) that resolve outside are
refused before anything is opened, and again while opening (`confined.py`); writes go to a new temp
file renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agentkit.tools.confined import confine, read_head, shown, write_bytes
from agentkit.tools.registry import ToolContext, ToolError, ToolFactory, register_tool


# ---- read_file ----------------------------------------------------------------------------------
class ReadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_chars: int = Field(default=4000, gt=0, description="characters returned; the rest is cut with a note")


def read_text(workspace: Path, target: Path, max_chars: int) -> str:
    """The text of `target` (from `confine`), cut after `max_chars` characters with a note."""
    name = shown(workspace, target)
    head, size = read_head(workspace, target, max_chars * 4 + 4)  # UTF-8: at most 4 bytes a character
    if b"\x00" in head[:8192]:
        raise ToolError(f"{name!r} is a binary file ({size} bytes); read_file shows text only.")
    text = head.decode("utf-8", errors="replace")
    if len(text) > max_chars or len(head) < size:
        return text[:max_chars] + f"\n[... truncated: {name} is {size} bytes; first {max_chars} characters shown]"
    return text


def _build_read(context: ToolContext, options: ReadOptions):  # -> BaseTool
    from langchain_core.tools import StructuredTool

    def read_file(path: str) -> str:
        """Read a text file in the workspace."""
        target = confine(context.workspace, path)
        try:
            return read_text(context.workspace, target, options.max_chars)
        except OSError as exc:  # permissions...: say so without the absolute path
            raise ToolError(f"cannot read {shown(context.workspace, target)!r}: {exc.strerror or exc}.") from None

    return StructuredTool.from_function(read_file, name="read_file", description="Read a text file.")


# ---- write_file ---------------------------------------------------------------------------------
class WriteOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(default=1_000_000, gt=0, description="largest file one call may write")


def _build_write(context: ToolContext, options: WriteOptions):  # -> BaseTool
    from langchain_core.tools import StructuredTool

    def write_file(path: str, content: str) -> str:
        """Write text to a file in the workspace (replaces it)."""
        target = confine(context.workspace, path)
        name = shown(context.workspace, target)
        data = str(content).encode("utf-8")
        if len(data) > options.max_bytes:
            raise ToolError(f"content is {len(data)} bytes; write_file takes at most {options.max_bytes}.")
        try:  # every folder on the way is opened without following links, at the moment of writing
            write_bytes(context.workspace, target, data)
        except OSError as exc:  # a parent that is a file, permissions, a full disk
            raise ToolError(f"cannot write {name!r}: {exc.strerror or exc}.") from None
        return f"wrote {len(content)} characters to {name}"

    return StructuredTool.from_function(
        write_file, name="write_file", description="Write text to a file (replaces it)."
    )


# ---- list_files ---------------------------------------------------------------------------------
_MAX_DEPTH = 32  # folder levels listed below the start


class ListOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_entries: int = Field(default=200, gt=0, description="entries listed before the rest are counted")


# Folders whose contents are noise to an agent (and can hold thousands of files): named, not entered.
_NOT_ENTERED = frozenset({".git", "__pycache__", ".venv", "node_modules", ".mypy_cache", ".pytest_cache"})


def list_tree(root: Path, start: Path, max_entries: int) -> list[str]:
    """Paths under `start` relative to `root`, folders with a trailing '/'. Symlinked folders are not
    entered (os.walk followlinks=False) and links that lead out of `root` are marked, not followed."""
    lines: list[str] = []
    extra = 0
    for folder, dirs, files in os.walk(start, followlinks=False):
        dirs.sort()
        skipped = {d for d in dirs if d in _NOT_ENTERED}
        if len(Path(folder).relative_to(start).parts) >= _MAX_DEPTH - 1:
            skipped = set(dirs)  # os.walk recurses: a tree thousands deep would raise RecursionError
        for name in [*dirs, *sorted(files)]:
            full = Path(folder) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                try:
                    resolved = full.resolve(strict=False)
                except (RuntimeError, OSError):  # a symlink loop
                    entry = f"{rel} (symlink loop)"
                else:
                    inside = resolved == root or root in resolved.parents
                    entry = rel + ("/" if inside and resolved.is_dir() else "")
                    entry += "" if inside else " (link outside, refused)"
            else:
                entry = rel + ("/" if full.is_dir() else "") + (" (not listed)" if name in skipped else "")
            if len(lines) < max_entries:
                lines.append(entry)
            else:
                extra += 1
        dirs[:] = [d for d in dirs if d not in skipped]
        if extra > 10 * max_entries:  # a huge tree: stop counting rather than walk it all
            lines.append(f"[... more than {extra} more entries not shown]")
            return lines
    if extra:
        lines.append(f"[... {extra} more entries not shown]")
    return lines


def _build_list(context: ToolContext, options: ListOptions):  # -> BaseTool
    from langchain_core.tools import StructuredTool

    def list_files(path: str = ".") -> str:
        """List the files in a workspace folder."""
        target = confine(context.workspace, path or ".")
        name = shown(context.workspace, target)
        if not target.exists():
            raise ToolError(f"no folder {name!r} in the workspace.", fix="call list_files with path '.'.")
        if not target.is_dir():
            return name
        lines = list_tree(context.workspace, target, options.max_entries)
        return "\n".join(lines) if lines else f"(folder {name} is empty)"

    return StructuredTool.from_function(
        list_files, name="list_files", description="List the files in a folder."
    )


register_tool(ToolFactory("read_file", _build_read, "read a text file in the workspace", ReadOptions))
register_tool(ToolFactory("write_file", _build_write, "write a text file in the workspace", WriteOptions))
register_tool(ToolFactory("list_files", _build_list, "list the files in the workspace", ListOptions))
