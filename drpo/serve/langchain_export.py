"""``drpo export --format langchain``: a finished run as plain LangChain objects, usable without drpo.

The directory holds ``prompt.json`` (a ``ChatPromptTemplate`` serialized with LangChain's own
``dumpd``: the optimized system prompt, a placeholder for the retrieved examples, the user's query),
``examples.jsonl`` (the run's examples, one ``{"query", "answer"}`` per line, for a
``SemanticSimilarityExampleSelector``) and ``manifest.json`` (K and the embedding model). Built
as docs/deployment.md shows, the messages equal what :class:`AlignedChatModel` sends for the same
query: the same prompt, the same K nearest examples in the same order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drpo.errors import DrpoInputError
from drpo.serve.runs import open_run_for_serving
from drpo.store.embeddings import PACKAGED_EMBEDDERS, resolve_embedding_source
from drpo.store.run_dir import atomic_write_text

EXPORT_FORMAT = "drpo-langchain/1"
# The hub ids of the embedding models drpo ships inside packages, for users who load them from the hub.
PACKAGED_HUB_IDS = {"packaged:all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


@dataclass(frozen=True)
class LangchainExport:
    directory: Path
    examples: int
    k: int


def chat_prompt_template(system_prompt: str, with_examples: bool) -> Any:
    """The system prompt as a literal message (braces in it are not template variables), the examples'
    messages, then the query."""
    from langchain_core.messages import SystemMessage
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

    parts: list[Any] = [SystemMessage(content=system_prompt)]
    if with_examples:
        parts.append(MessagesPlaceholder("examples", optional=True))
    parts.append(("human", "{query}"))
    return ChatPromptTemplate.from_messages(parts)


def embedding_manifest(name: str) -> dict[str, str | None]:
    source, local = resolve_embedding_source(name)
    hub_id = PACKAGED_HUB_IDS.get(name) if name in PACKAGED_EMBEDDERS else (None if local else name)
    return {
        "embedding_model": name,
        "embedding_model_local_path": source if local else None,
        "embedding_model_hub_id": hub_id,
    }


def export_langchain(run: str | Path, runs_dir: Path, directory: Path) -> LangchainExport:
    from langchain_core.load import dumpd

    served = open_run_for_serving(Path(run), runs_dir)
    if served.base_mode != "chat":
        raise DrpoInputError(
            f"run {served.run_id} was optimized in completion mode; --format langchain exports chat runs"
        )
    examples = [{"query": str(row["query"]), "answer": str(row["answer"])} for row in served.store.metadata()]
    examples.sort(key=lambda example: example["query"])
    with_examples = served.k > 0 and bool(examples)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        prompt = dumpd(chat_prompt_template(served.system_prompt, with_examples))
        atomic_write_text(directory / "prompt.json", json.dumps(prompt, indent=2, ensure_ascii=False) + "\n")
        lines = "".join(json.dumps(example, ensure_ascii=False) + "\n" for example in examples)
        atomic_write_text(directory / "examples.jsonl", lines if with_examples else "")
        manifest = {
            "format": EXPORT_FORMAT,
            "run_id": served.run_id,
            "k": served.k if with_examples else 0,
            **embedding_manifest(served.embedding_model),
        }
        atomic_write_text(directory / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    except OSError as error:
        raise DrpoInputError(f"cannot write {directory}: {error.strerror}") from None
    return LangchainExport(directory, len(examples) if with_examples else 0, manifest["k"])  # type: ignore[arg-type]
