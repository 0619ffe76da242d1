"""File access confined to a workspace folder, checked at the moment of use, not only before it.

`confine` turns a model-given path into a resolved path inside the workspace (or refuses it); the
readers and writers here then walk that path one component at a time with `openat`-style calls
(`dir_fd` + `O_NOFOLLOW`), so a symlink swapped in after the check (by the python tool, another
process, or an input folder the user copied) makes the call fail instead of leading outside.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from agentkit.tools.registry import ToolError

# O_NOFOLLOW on every component; O_CLOEXEC so no child (python tool, checks) inherits an fd
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO for reading must not wait for a writer forever
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# O_EXCL + O_NOFOLLOW: the temp file is new, never a planted file or link of the same name
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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
    try:  # strict=False: a file about to be written need not exist; its existing parents are resolved
        target = (root / text).resolve(strict=False)
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError on Python 3.11, OSError ELOOP later)
        raise ToolError(f"path {text!r} goes through a symlink loop.", fix="use plain files and folders.") from None
    if target != root and root not in target.parents:
        raise ToolError(
            f"path {text!r} resolves outside the workspace (through a symlink).",
            fix="use files that live inside the workspace.",
        )
    return target


def confine_entry(workspace: Path, path: str) -> Path:
    """Like `confine`, but the last name is kept as it is, not resolved: the entry itself (a link is
    the link, not its target), for removing it."""
    text = str(path).strip().rstrip("/")
    parent, _, name = text.rpartition("/")
    if name in ("", ".", ".."):
        raise ToolError(f"path {text!r} does not name a file.", fix="give a file path, e.g. report.md")
    return confine(workspace, parent or ".") / name


def shown(workspace: Path, target: Path) -> str:
    """`target` as the model should see it: relative to the workspace, '.' for the workspace itself."""
    root = workspace.resolve()
    return "." if target == root else target.relative_to(root).as_posix()


def _moved(name: str) -> ToolError:
    return ToolError(
        f"{name!r} changed while in use (a symlink or special file appeared on the way); nothing was done.",
        fix="use plain files and folders inside the workspace.",
    )


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


@contextmanager
def open_parent(workspace: Path, target: Path, *, create: bool) -> Iterator[tuple[int, str]]:
    """(fd of `target`'s folder, `target`'s last name), reached from the workspace root one component
    at a time without following any symlink; missing folders are made on the way when `create`.
    `target` must come from `confine`, which has already resolved every link that stays inside."""
    root = workspace.resolve()
    parts = target.relative_to(root).parts
    if not parts:
        raise ToolError("'.' is a directory (the workspace itself).", fix="give a file path, e.g. notes.txt")
    fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)  # the root itself is the user's; a link to it is fine
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile by someone else: opened (and checked) just below
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                # O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR on Linux, as a plain file does
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(part, fd):
                    raise _moved(shown(workspace, target)) from None
                raise
            os.close(fd)
            fd = child
        yield fd, parts[-1]
    finally:
        os.close(fd)


def write_bytes(workspace: Path, target: Path, data: bytes) -> None:
    """Replace `target` (from `confine`) with `data`: a new temp file with a random name, made with
    O_EXCL|O_NOFOLLOW in the target's folder, then renamed over the target, so a reader never sees
    half a file and no planted link is written through. A file with other hard links is refused:
    its other names may sit outside the workspace."""
    name = shown(workspace, target)
    with open_parent(workspace, target, create=True) as (folder, leaf):
        try:
            old = os.stat(leaf, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None:
            if stat.S_ISDIR(old.st_mode):
                raise ToolError(f"{name!r} is a directory.", fix="write to a file path, e.g. out/notes.txt")
            if stat.S_ISLNK(old.st_mode) or not stat.S_ISREG(old.st_mode):
                raise _moved(name)
            if old.st_nlink > 1:
                raise ToolError(
                    f"{name!r} has {old.st_nlink} hard links; one of its other names may lie outside "
                    "the workspace, so it is not written.",
                    fix="write to a new file name.",
                )
        tmp = f".{leaf[:64]}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, _TEMP_FLAGS, 0o644, dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, leaf, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=folder)
            except FileNotFoundError:
                pass
            raise


def similar_files(workspace: Path, name: str, limit: int = 2, scan: int = 2000) -> list[str]:
    """Workspace files whose name is the one asked for, or close to it ('totals.txt' for 'total.txt'),
    as workspace-relative paths; the walk follows no link and stops after `scan` entries."""
    import difflib

    wanted = Path(name).name.lower()
    found: list[str] = []
    for root, dirs, files in os.walk(workspace):  # followlinks=False: a link to outside is never entered
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        room = scan - len(found)
        found += [os.path.relpath(os.path.join(root, f), workspace) for f in sorted(files) if not f.startswith(".")][:room]
        if len(found) >= scan:
            break
    exact = [f for f in found if Path(f).name.lower() == wanted and f != name]
    if exact:
        return exact[:limit]
    close = difflib.get_close_matches(wanted, [Path(f).name.lower() for f in found], n=limit, cutoff=0.75)
    return [f for f in found if Path(f).name.lower() in close][:limit]


def read_head(workspace: Path, target: Path, limit: int) -> tuple[bytes, int]:
    """(the first `limit` bytes of `target`, its size in bytes), opened without following links.
    Refuses folders and anything that is not a regular file (a FIFO or a device could block)."""
    name = shown(workspace, target)
    try:
        with open_parent(workspace, target, create=False) as (folder, leaf):
            fd = os.open(leaf, _READ_FLAGS, dir_fd=folder)
    except FileNotFoundError:
        near = similar_files(workspace, name)
        fix = f"did you mean {' or '.join(map(repr, near))}? Use that path." if near else "call list_files to see what exists."
        raise ToolError(f"no file {name!r} in the workspace.", fix=fix) from None
    except IsADirectoryError:
        raise ToolError(f"{name!r} is a directory.", fix=f"call list_files with path {name!r}.") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component became a link after `confine` resolved it
            raise _moved(name) from None
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise ToolError(f"{name!r} is a directory.", fix=f"call list_files with path {name!r}.")
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"{name!r} is not a regular file.")
        return handle.read(limit), info.st_size


def remove(workspace: Path, target: Path) -> None:
    """Remove the entry `target` (from `confine_entry`) if it exists, reached without following links:
    a link is removed, never the file it points to. A folder is left alone."""
    try:
        with open_parent(workspace, target, create=False) as (folder, leaf):
            os.unlink(leaf, dir_fd=folder)
    except (FileNotFoundError, IsADirectoryError):
        pass
