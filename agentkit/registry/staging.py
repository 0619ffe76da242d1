"""Staging folders under `$AGENTKIT_HOME/tmp`, each owned by a live process, and `clean_stale`, which
removes those whose owner died (kill -9, OOM, power loss) before it could clean up after itself.

Ownership is an `fcntl.flock` held on `tmp/<name>.owner` for the life of `tmp/<name>/`: the kernel
drops it when the owner exits however it exits, so "can I take the lock?" is "is the owner gone?"
without trusting pids, which the OS reuses (the pid in the record is only for messages). POSIX only.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

TMP_DIR = "tmp"
OWNER_SUFFIX = ".owner"
# Folders with no owner record were made by an agentkit from before records existed; one untouched
# for a day is not a live conversion or training run, so `agentkit models gc` may take it.
OWNERLESS_AGE_S = 24 * 3600

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Freed:
    """One staging folder removed (or, in a dry run, removable): where, how big, and why."""

    path: Path
    bytes: int
    reason: str


@contextmanager
def _claim_lock(home: Path) -> Iterator[None]:
    """Serialises claiming (create owner file + lock it) against scanning, so a scan never takes the
    lock of an owner file in the instant between its creation and its owner's flock."""
    from filelock import FileLock

    locks = home / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / "staging.lock"), timeout=600):
        yield


def _owner_path(folder: Path) -> Path:
    return folder.with_name(folder.name + OWNER_SUFFIX)


@contextmanager
def staging_dir(home: str | Path, purpose: str, *, create: bool = True) -> Iterator[Path]:
    """`tmp/<purpose>.<uuid>/`, owned by this process until the block exits, then removed.

    Renaming it away (publishing an entry) is the normal way out. `create=False` yields the path
    without making the folder, for callers that rename something into it (trash). Stale folders of
    dead owners are cleaned first, so every registry write also collects what crashed writes left.
    """
    home = Path(home)
    clean_stale(home)
    tmp = home / TMP_DIR
    tmp.mkdir(parents=True, exist_ok=True)
    folder = tmp / f"{purpose}.{uuid.uuid4().hex}"
    owner = _owner_path(folder)
    record = {"pid": os.getpid(), "purpose": purpose, "created": time.time()}
    with _claim_lock(home):
        fd = os.open(owner, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
            os.write(fd, json.dumps(record).encode())
            if create:
                folder.mkdir()
        except BaseException:
            os.close(fd)
            owner.unlink(missing_ok=True)
            raise
    try:
        yield folder
    finally:
        # Folder first, record last: while any of the folder exists, its live owner says so.
        shutil.rmtree(folder, ignore_errors=True)
        owner.unlink(missing_ok=True)
        os.close(fd)


def _measure(folder: Path) -> tuple[int, float]:
    """(bytes of the files under `folder`, newest mtime of anything in it); symlinks not followed."""
    total, newest = 0, 0.0
    try:
        stat = folder.lstat()
    except FileNotFoundError:
        return 0, 0.0
    if not folder.is_dir() or folder.is_symlink():
        return stat.st_size, stat.st_mtime
    newest = stat.st_mtime
    for dirpath, dirnames, filenames in os.walk(folder):
        for name, is_file in [(d, False) for d in dirnames] + [(f, True) for f in filenames]:
            with suppress(FileNotFoundError):
                stat = os.lstat(os.path.join(dirpath, name))
                newest = max(newest, stat.st_mtime)
                total += stat.st_size if is_file else 0
    return total, newest


def _owner_pid(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return str(json.loads(os.read(fd, 4096).decode() or "{}").get("pid", "?"))
    except (OSError, ValueError):
        return "?"


def _remove(path: Path) -> bool:
    """True once `path` is gone; a permission problem is reported by the caller, not raised."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(OSError):
            path.unlink(missing_ok=True)
    return not os.path.lexists(path)


def clean_stale(
    home: str | Path, *, dry_run: bool = False, ownerless_age_s: float | None = None
) -> list[Freed]:
    """Remove staging folders under `home/tmp` whose owner process is gone; return what was freed.

    Cheap when nothing is stale (one listdir and a non-blocking flock per live staging). With
    `ownerless_age_s`, folders without an owner record untouched for that long go too (see
    OWNERLESS_AGE_S). Never raises for a folder it cannot remove: it logs and keeps going.
    """
    home = Path(home)
    tmp = home / TMP_DIR
    if not tmp.is_dir():
        return []
    min_age = ownerless_age_s if ownerless_age_s is not None else float("inf")
    stale: list[tuple[Path, int]] = []  # (folder, fd whose lock we now hold)
    ownerless: list[Path] = []
    with _claim_lock(home):
        names = set(os.listdir(tmp))
        for name in sorted(names):
            if not name.endswith(OWNER_SUFFIX):
                if ownerless_age_s is not None and name + OWNER_SUFFIX not in names:
                    ownerless.append(tmp / name)
                continue
            try:
                fd = os.open(tmp / name, os.O_RDWR)
            except FileNotFoundError:  # its owner finished while we listed
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # held: the owner is alive
                os.close(fd)
                continue
            if os.fstat(fd).st_nlink == 0:  # another cleaner removed it after we opened it
                os.close(fd)
                continue
            stale.append((tmp / name.removesuffix(OWNER_SUFFIX), fd))
    freed: list[Freed] = []
    for folder, fd in stale:  # removed outside the claim lock: rmtree of 500 MB takes a while
        try:
            existed = os.path.lexists(folder)  # not if its owner died before mkdir or after publishing
            size, _ = _measure(folder)
            if not dry_run:
                if not _remove(folder):
                    log.warning("could not remove stale staging folder %s; remove it by hand", folder)
                    continue
                _owner_path(folder).unlink(missing_ok=True)
            if existed:
                freed.append(Freed(folder, size, f"owner pid {_owner_pid(fd)} gone"))
        finally:
            os.close(fd)
    now = time.time()
    for folder in ownerless:
        size, newest = _measure(folder)
        if not os.path.lexists(folder) or now - newest < min_age:
            continue
        reason = f"no owner record, untouched for {(now - newest) / 3600:.0f} h"
        if dry_run or _remove(folder):
            freed.append(Freed(folder, size, reason))
        else:
            log.warning("could not remove %s; remove it by hand", folder)
    for item in freed:
        log.info("%s stale staging %s (%d bytes, %s)", "would remove" if dry_run else "removed",
                 item.path, item.bytes, item.reason)  # fmt: skip
    return freed
