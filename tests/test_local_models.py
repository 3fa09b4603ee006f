"""Packaged GGUF models: chunk assembly with SHA-256 verification, and name/path resolution."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from drpo.errors import DrpoInputError
from drpo.llm.local_models import PACKAGED_MODELS, assemble_chunks, resolve_local_model, sha256_of
from drpo.store.embeddings import Embedder, resolve_embedding_source


def chunks(tmp_path: Path) -> tuple[list[Path], str]:
    parts = []
    for index, payload in enumerate([b"GGUF" + b"a" * 1000, b"b" * 3000, b"c" * 10]):
        part = tmp_path / f"part{index}.bin"
        part.write_bytes(payload)
        parts.append(part)
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()
    return parts, digest


def test_chunks_are_concatenated_in_order_and_verified(tmp_path: Path) -> None:
    parts, digest = chunks(tmp_path)
    target = assemble_chunks(parts, tmp_path / "out" / "model.gguf", digest)
    assert sha256_of(target) == digest and target.stat().st_size == 4014


def test_a_bad_hash_leaves_no_file_behind(tmp_path: Path) -> None:
    parts, _ = chunks(tmp_path)
    target = tmp_path / "out" / "model.gguf"
    with pytest.raises(DrpoInputError, match="SHA-256"):
        assemble_chunks(parts, target, "0" * 64)
    assert not target.exists() and not list(target.parent.glob(".*tmp"))


def test_the_default_model_assembles_from_its_pinned_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRPO_CACHE_DIR", str(tmp_path))
    path = resolve_local_model("qwen2.5-0.5b")
    assert path.parent == tmp_path / "models"
    assert sha256_of(path) == PACKAGED_MODELS["qwen2.5-0.5b"].sha256
    assert resolve_local_model("qwen2.5-0.5b") == path  # second call reuses the verified file


def test_smollm_and_gguf_paths(tmp_path: Path) -> None:
    assert resolve_local_model("smollm2-135m").name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    own = tmp_path / "mine.gguf"
    own.write_bytes(resolve_local_model("smollm2-135m").read_bytes())  # a real model under a user's path
    assert resolve_local_model(str(own)) == own
    own.write_bytes(b"GGUF")
    with pytest.raises(DrpoInputError, match="truncated: it ends inside its header"):
        resolve_local_model(str(own))
    with pytest.raises(DrpoInputError, match="not found"):
        resolve_local_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(DrpoInputError, match="unknown local model"):
        resolve_local_model("llama-9000")


def test_embeddings_load_from_the_package_and_from_a_local_folder() -> None:
    source, local = resolve_embedding_source("packaged:all-minilm-l6-v2")
    assert local and Path(source).is_dir()
    vectors = Embedder(source).embed(["hello world", "bonjour le monde"])  # the hub-style path, on local files
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert resolve_embedding_source("sentence-transformers/all-mpnet-base-v2") == (
        "sentence-transformers/all-mpnet-base-v2",
        False,
    )
    with pytest.raises(ValueError, match="unknown packaged"):
        resolve_embedding_source("packaged:nope")
