"""The workspace file tools: read_file, write_file, list_files, each confined to the run's workspace.

Absolute paths, `..` that climbs out, and symlinks (the file or any parent) that resolve outside are
refused before anything is opened; writes go to a temp file renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field

from agentkit.tools.registry import ToolContext, ToolError, ToolFactory, register_tool


def confine(workspace: Path, path: str) -> Path:
    """`path` (relative to `workspace`) as a resolved absolute path inside it, or a ToolError that says
    why not. Symlinks are resolved first, so a link anywhere on the way that leads out is caught."""
    text = str(path).strip()
    if not text:
        raise ToolError("empty path.", fix="give a path relative to the workspace, e.g. notes.txt")
    if "\x00" in text:
        raise ToolError(f"path {text!r} contains a NUL byte.", fix="give a plain relative path.")
    if os.path.isabs(text) or PurePosixPath(text).is_absolute() or text.startswith("~"):
        raise ToolError(
            f"path {text!r} is absolute; only paths inside the workspace are allowed.",
            fix="give a path relative to the workspace, e.g. notes.txt",
        )
    if os.path.normpath(text).split(os.sep)[0] == "..":
        raise ToolError(f"path {text!r} leaves the workspace.", fix="give a path inside the workspace.")
    root = workspace.resolve()
    # strict=False: a file about to be written need not exist; its existing parents are still resolved
    target = (root / text).resolve(strict=False)
    if target != root and root not in target.parents:
        raise ToolError(
            f"path {text!r} resolves outside the workspace (through a symlink).",
            fix="use files that live inside the workspace.",
        )
    return target


def _shown(workspace: Path, target: Path) -> str:
    return "." if target == workspace else target.relative_to(workspace).as_posix()


# ---- read_file ----------------------------------------------------------------------------------
class ReadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_chars: int = Field(default=4000, gt=0, description="characters returned; the rest is cut with a note")


def read_text(target: Path, shown: str, max_chars: int) -> str:
    if not target.exists():
        raise ToolError(f"no file {shown!r} in the workspace.", fix="call list_files to see what exists.")
    if target.is_dir():
        raise ToolError(f"{shown!r} is a directory.", fix=f"call list_files with path {shown!r}.")
    if not target.is_file():  # a FIFO or a device: opening it could block the run forever
        raise ToolError(f"{shown!r} is not a regular file.")
    size = target.stat().st_size
    with target.open("rb") as handle:
        head = handle.read(max_chars * 4 + 4)  # UTF-8: at most 4 bytes per character
    if b"\x00" in head[:8192]:
        raise ToolError(f"{shown!r} is a binary file ({size} bytes); read_file shows text only.")
    text = head.decode("utf-8", errors="replace")
    if len(text) > max_chars or len(head) < size:
        return (
            text[:max_chars]
            + f"\n[... truncated: {shown} is {size} bytes; first {max_chars} characters shown]"
        )
    return text


def _build_read(context: ToolContext, options: ReadOptions):  # -> BaseTool
    from langchain_core.tools import StructuredTool

    def read_file(path: str) -> str:
        """Read a text file in the workspace."""
        target = confine(context.workspace, path)
        shown = _shown(context.workspace, target)
        try:
            return read_text(target, shown, options.max_chars)
        except OSError as exc:  # permissions, a FIFO...: say so without the absolute path
            raise ToolError(f"cannot read {shown!r}: {exc.strerror or exc}.") from None

    return StructuredTool.from_function(read_file, name="read_file", description="Read a text file.")


# ---- write_file ---------------------------------------------------------------------------------
class WriteOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(default=1_000_000, gt=0, description="largest file one call may write")


def write_atomic(target: Path, data: bytes) -> None:
    """Write via a temp file in the same folder, then rename, so a reader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _build_write(context: ToolContext, options: WriteOptions):  # -> BaseTool
    from langchain_core.tools import StructuredTool

    def write_file(path: str, content: str) -> str:
        """Write text to a file in the workspace (replaces it)."""
        target = confine(context.workspace, path)
        shown = _shown(context.workspace, target)
        if target.is_dir():
            raise ToolError(f"{shown!r} is a directory.", fix="write to a file path, e.g. out/notes.txt")
        data = str(content).encode("utf-8")
        if len(data) > options.max_bytes:
            raise ToolError(f"content is {len(data)} bytes; write_file takes at most {options.max_bytes}.")
        # the parents created here are inside the workspace: confine() resolved their existing part
        try:
            write_atomic(target, data)
        except OSError as exc:  # a parent that is a file, permissions, a full disk
            raise ToolError(f"cannot write {shown!r}: {exc.strerror or exc}.") from None
        return f"wrote {len(content)} characters to {shown}"

    return StructuredTool.from_function(
        write_file, name="write_file", description="Write text to a file (replaces it)."
    )


# ---- list_files ---------------------------------------------------------------------------------
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
        for name in [*dirs, *sorted(files)]:
            full = Path(folder) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                resolved = full.resolve(strict=False)
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
        shown = _shown(context.workspace, target)
        if not target.exists():
            raise ToolError(f"no folder {shown!r} in the workspace.", fix="call list_files with path '.'.")
        if not target.is_dir():
            return shown
        lines = list_tree(context.workspace, target, options.max_entries)
        return "\n".join(lines) if lines else f"(folder {shown} is empty)"

    return StructuredTool.from_function(
        list_files, name="list_files", description="List the files in a folder."
    )


register_tool(ToolFactory("read_file", _build_read, "read a text file in the workspace", ReadOptions))
register_tool(ToolFactory("write_file", _build_write, "write a text file in the workspace", WriteOptions))
register_tool(ToolFactory("list_files", _build_list, "list the files in the workspace", ListOptions))
