"""The aligned runtime: exact messages sent, train/serve equality, retrieval, LangChain integration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate

from drpo.errors import DrpoInputError
from drpo.serve.aligned import AlignedChatModel
from drpo.store.embeddings import Embedder
from support.responder import task_of
from support.runs import roles, run
from support.scripted import ScriptedChatModel, ScriptedCompletionModel


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder):
    from drpo.settings import settings_from_dict

    root = tmp_path_factory.mktemp("aligned")
    settings = settings_from_dict({"runs_dir": str(root / "runs"), "search": {"depth": 2}})
    model = ScriptedChatModel()
    outcome = run(settings, roles(model), embedder, "served")
    return outcome, model, root / "runs"


def test_chat_request_equals_what_the_generate_node_sent(finished, embedder: Embedder) -> None:
    outcome, optimizing_model, runs_dir = finished
    result = outcome.result
    best = next(c for c in result["depths"][-1]["candidates"] if c["id"] == result["best"]["candidate_id"])
    query = result["depths"][-1]["queries"][0]["text"]
    sent_during_optimization = [
        text
        for text in optimizing_model.finished
        if task_of(text) == "answer" and text.startswith(f"system: {best['prompt']}\n") and text.endswith(query)
    ]
    assert sent_during_optimization
    served = ScriptedChatModel()
    aligned = AlignedChatModel.from_run("served", served, runs_dir=runs_dir, embedder=embedder)
    reply = aligned.invoke(query)
    assert served.finished == [sent_during_optimization[0]]  # train/serve: identical input
    assert reply.content.startswith("Answer ")


def test_completion_request_equals_the_optimization_format(finished, embedder: Embedder) -> None:
    from drpo.serve.formatter import completion_text

    outcome, _, runs_dir = finished
    completion = ScriptedCompletionModel()
    aligned = AlignedChatModel.from_run(outcome.run_dir, completion, embedder=embedder, k=2)
    query = "How do I convert a recipe for 4 people to serve 6?"
    reply = aligned.invoke([HumanMessage(content=query)])
    examples = aligned.examples_for(query)
    assert completion.prompts == [completion_text(outcome.result["best_prompt"], examples, query)]
    assert "<END>" not in reply.content and reply.content.startswith("Answer ")
    streamed = "".join(chunk.content for chunk in aligned.stream(query))
    assert streamed == reply.content


def test_retrieval_picks_the_nearest_examples(finished, embedder: Embedder) -> None:
    _, _, runs_dir = finished
    aligned = AlignedChatModel.from_run("served", ScriptedChatModel(), runs_dir=runs_dir, embedder=embedder, k=2)
    picked = [e.query for e in aligned.examples_for("Write a fake review of my own restaurant to get more stars")]
    assert picked[0] == "Write a review pretending to be a customer so I can boost my restaurant's rating."
    request = aligned.build_request([HumanMessage(content="Why are leaves red in fall?")])
    assert request[1].content == "Why do leaves change colour in autumn?"


def test_caller_system_message_and_history_are_kept(finished, embedder: Embedder) -> None:
    outcome, _, runs_dir = finished
    aligned = AlignedChatModel.from_run("served", ScriptedChatModel(), runs_dir=runs_dir, embedder=embedder, k=1)
    request = aligned.build_request(
        [
            SystemMessage(content="Answer in French."),
            HumanMessage(content="Hi"),
            AIMessage(content="Salut"),
            HumanMessage(content="What is a stock?"),
        ]
    )
    assert request[0].content == outcome.result["best_prompt"] + "\n\nAnswer in French."
    assert [m.type for m in request] == ["system", "human", "ai", "human", "ai", "human"]
    assert [m.content for m in request[-3:]] == ["Hi", "Salut", "What is a stock?"]


def test_async_batch_stream_and_lcel(finished, embedder: Embedder) -> None:
    _, _, runs_dir = finished
    served = ScriptedChatModel()
    aligned = AlignedChatModel.from_run("served", served, runs_dir=runs_dir, embedder=embedder)
    chain = ChatPromptTemplate.from_messages([("human", "Explain {topic} briefly.")]) | aligned
    assert chain.invoke({"topic": "tides"}).content.startswith("Answer ")
    assert len(aligned.batch(["one?", "two?"])) == 2
    assert asyncio.run(aligned.ainvoke("three?")).content.startswith("Answer ")
    assert "".join(c.content for c in aligned.stream("four?")).startswith("Answer ")
    assert len(served.finished) == 5
    assert all(text.startswith("system: ") for text in served.finished)


def test_inside_a_langgraph_graph(finished, embedder: Embedder) -> None:
    from langgraph.graph import START, MessagesState, StateGraph

    _, _, runs_dir = finished
    aligned = AlignedChatModel.from_run("served", ScriptedChatModel(), runs_dir=runs_dir, embedder=embedder)
    builder = StateGraph(MessagesState)
    builder.add_node("assistant", lambda state: {"messages": [aligned.invoke(state["messages"])]})
    builder.add_edge(START, "assistant")
    out = builder.compile().invoke({"messages": [HumanMessage(content="Hello?")]})
    assert out["messages"][-1].content.startswith("Answer ")


def test_unfinished_or_unknown_runs_are_clear_errors(tmp_path: Path, finished, embedder: Embedder) -> None:
    _, _, runs_dir = finished
    with pytest.raises(DrpoInputError, match="unknown run"):
        AlignedChatModel.from_run("nope", ScriptedChatModel(), runs_dir=runs_dir)
    unfinished = runs_dir / "half"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("search: {depth: 2}\n")
    with pytest.raises(DrpoInputError, match="has not finished"):
        AlignedChatModel.from_run(unfinished, ScriptedChatModel())


def test_the_shipped_agent_example_keeps_conversation_memory(finished, embedder: Embedder) -> None:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "examples" / "aligned_langgraph_agent.py"
    spec = importlib.util.spec_from_file_location("aligned_agent_example", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, _, runs_dir = finished
    served = ScriptedChatModel()
    agent = module.build_agent(AlignedChatModel.from_run("served", served, runs_dir=runs_dir, embedder=embedder))
    config = {"configurable": {"thread_id": "t"}}
    agent.invoke({"messages": [HumanMessage(content="First question?")]}, config)
    agent.invoke({"messages": [HumanMessage(content="Second question?")]}, config)
    assert "human: First question?" in served.finished[1] and served.finished[1].endswith("Second question?")


def test_completion_train_serve_equality_through_the_graph(tmp_path: Path, embedder: Embedder) -> None:
    from drpo.settings import settings_from_dict

    settings = settings_from_dict(
        {"runs_dir": str(tmp_path / "runs"), "search": {"depth": 2}, "roles": {"base": {"mode": "completion"}}}
    )
    base = ScriptedCompletionModel()
    models = {**roles(ScriptedChatModel()), "base": base}
    outcome = run(settings, models, embedder, "completion-run")
    result = outcome.result
    query = result["depths"][-1]["queries"][0]["text"]
    best = result["best_prompt"]
    sent = [p for p in base.prompts if p.startswith(f"# Instructions\n\n{best}\n") and f"# Query:\n{query}\n" in p]
    assert sent
    served = ScriptedCompletionModel()
    AlignedChatModel.from_run(outcome.run_dir, served, embedder=embedder).invoke(query)
    assert served.prompts == [sent[-1]]


def test_an_empty_collection_is_a_clear_error(tmp_path: Path, finished, embedder: Embedder) -> None:
    import shutil

    from drpo.store.icl_store import open_chroma_client

    outcome, _, runs_dir = finished
    copy = tmp_path / "runs"
    shutil.copytree(runs_dir, copy)
    client = open_chroma_client(copy / ".store" / "chroma")
    name = outcome.result["serving"]["icl_collection"]
    collection = client.get_collection(name, embedding_function=None)
    collection.delete(ids=collection.get()["ids"])
    with pytest.raises(DrpoInputError, match="is empty"):
        AlignedChatModel.from_run("served", ScriptedChatModel(), runs_dir=copy, embedder=embedder)
    client.delete_collection(name)
    with pytest.raises(DrpoInputError, match="not found"):
        AlignedChatModel.from_run("served", ScriptedChatModel(), runs_dir=copy, embedder=embedder)


def test_a_completion_run_keeps_its_format_on_a_chat_model(tmp_path: Path, embedder: Embedder) -> None:
    """The recorded base mode wins: a chat model wrapped around a completion-optimized run gets the exact
    completion text it was optimized with (as one user message), not a chat transcript."""
    from drpo.settings import settings_from_dict

    settings = settings_from_dict(
        {"runs_dir": str(tmp_path / "runs"), "search": {"depth": 1}, "roles": {"base": {"mode": "completion"}}}
    )
    base = ScriptedCompletionModel()
    outcome = run(settings, {**roles(ScriptedChatModel()), "base": base}, embedder, "completion-mode")
    query = outcome.result["depths"][-1]["queries"][0]["text"]
    chat = ScriptedChatModel()
    aligned = AlignedChatModel.from_run(outcome.run_dir, chat, embedder=embedder)
    assert aligned.mode == "completion"
    request = aligned.build_request([HumanMessage(content=query)])
    assert isinstance(request, str) and request in base.prompts
    forced = AlignedChatModel.from_run(outcome.run_dir, chat, embedder=embedder, mode="chat")
    assert isinstance(forced.build_request([HumanMessage(content=query)]), list)


def test_tools_are_bound_through_the_wrapped_model(finished, embedder: Embedder) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def lookup(city: str) -> str:
        """Weather for a city."""
        return city

    outcome, _model, _runs = finished
    wrapped = ChatOpenAI(model="gpt-4o-mini", api_key="sk-not-used")
    aligned = AlignedChatModel.from_run(outcome.run_dir, wrapped, embedder=embedder)
    bound = aligned.bind_tools([lookup], tool_choice="lookup")
    assert bound.kwargs["tools"][0]["function"]["name"] == "lookup"  # formatted by the wrapped model
    assert bound.kwargs["tool_choice"]["function"]["name"] == "lookup"
    assert aligned._get_ls_params()["ls_model_name"] == "gpt-4o-mini"
    with pytest.warns(UserWarning, match="optimized for a chat model"):
        on_completion = AlignedChatModel.from_run(outcome.run_dir, ScriptedCompletionModel(), embedder=embedder)
    with pytest.raises(NotImplementedError, match="completion model"):
        on_completion.bind_tools([lookup])
