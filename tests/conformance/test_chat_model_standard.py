"""LangChain's standard tests (``langchain-tests``) for AlignedChatModel.

Unit tests wrap a ChatOpenAI that is never called; integration tests wrap the embedded SmolLM2 model
served by drpo's in-process llama.cpp server, so they run offline. Only what that wrapped model
genuinely cannot do is skipped, with the reason next to the property that turns it off.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from drpo.llm.local_models import resolve_local_model
from drpo.llm.local_server import LocalServerPool
from drpo.serve.aligned import AlignedChatModel
from drpo.settings import LocalServerSettings

PROMPT = "You are a helpful, honest assistant. Answer briefly."


class TestAlignedChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[AlignedChatModel]:
        return AlignedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"llm": ChatOpenAI(model="gpt-4o-mini", api_key="sk-not-used", max_retries=0), "system_prompt": PROMPT}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return {}, {}, {}  # the wrapped model reads its own environment, not the wrapper


@pytest.fixture(scope="module")
def embedded_smollm() -> Iterator[str]:
    pool = LocalServerPool(LocalServerSettings(n_ctx=4096, parallel=1))
    try:
        yield pool.base_url_for(resolve_local_model("smollm2-135m"))
    finally:
        pool.close()


@pytest.mark.embedded
class TestAlignedChatModelIntegration(ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _server(self, embedded_smollm: str) -> None:
        type(self).base_url = embedded_smollm

    base_url = ""

    @property
    def chat_model_class(self) -> type[AlignedChatModel]:
        return AlignedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        wrapped = ChatOpenAI(
            model="smollm2-135m",
            base_url=self.base_url,
            api_key="local",
            max_tokens=48,
            temperature=0,
            stream_usage=True,
            max_retries=0,
            # a client per model: langchain-openai caches one async client per URL, and each test has its own loop
            http_async_client=httpx.AsyncClient(),
        )
        return {"llm": wrapped, "system_prompt": PROMPT}

    @property
    def has_tool_calling(self) -> bool:
        return False  # SmolLM2-135M does not produce tool calls (embedded-models.md); bind_tools itself delegates

    @property
    def has_structured_output(self) -> bool:
        return False  # it cannot follow JSON tasks (0/10 valid in embedded-models.md)

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True
