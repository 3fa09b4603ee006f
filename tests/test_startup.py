"""Start fast, prepare ahead: the embedding cache, the background warm-up, and the next depth's aspects
selected beside the current depth's transitions."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from drpo.background import Background
from drpo.run.driver import optimize
from drpo.run.services import build_services
from drpo.settings import Settings, load_settings
from drpo.store.embedding_cache import EmbeddingCache
from drpo.store.embeddings import Embedder
from drpo.store.run_dir import RunDir
from support.cli import fake_server_config
from support.fake_openai import FakeOpenAIServer

EMBEDDER = "packaged:all-minilm-l6-v2"


def test_cached_embeddings_need_no_model(tmp_path: Path, embedder: Embedder) -> None:
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite")
    texts = ["How do I boil an egg?", "Why is the sky blue?", "How do I boil an egg?"]
    first = embedder.with_cache(cache).embed(texts)
    assert first[0] == first[2] and len(cache) == 2  # one entry per distinct text
    cold = Embedder(EMBEDDER, cache)  # a new process: nothing loaded
    assert cold.embed(texts) == first  # exact: the cache keeps every digit
    assert not cold.model_loaded
    cold.embed(["A text never embedded before"])
    assert cold.model_loaded and len(cache) == 3
    other = EmbeddingCache(tmp_path / "embeddings.sqlite")
    assert other.get_many("another-model", texts) == {}  # keyed by the model too
    other.close()
    cache.close()


def test_a_second_run_over_the_same_store_loads_no_embedding_model(tmp_path: Path, embedder: Embedder) -> None:
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url)
        settings = load_settings(config, {"runs_dir": str(tmp_path / "runs"), "store_dir": str(tmp_path / "store")})
        for name, model in (("first", embedder), ("second", Embedder(EMBEDDER))):
            run_dir = RunDir(tmp_path / "runs" / name)
            run_dir.root.mkdir(parents=True)
            services = build_services(settings, run_dir, embedder=model)
            services.start_warm_up()
            assert services.icl_store.count() > 0
            assert len(services.query_embedding(services.seed_order[0])) == 384
            loaded = services.embedder.model_loaded
            services.close()
        assert not loaded  # the ICL examples and the reachable queries came from the store's cache


def test_background_errors_reach_the_caller() -> None:
    def broken() -> int:
        raise ValueError("no Chroma today")

    task = Background(broken, name="test")
    task.start()
    with pytest.raises(ValueError, match="no Chroma today"):
        task.get()
    calls = []
    counted = Background(lambda: calls.append(threading.current_thread().name) or 7, name="once")
    assert counted.get() == counted.get() == 7 and calls == ["once"]  # built once, on its own thread


def test_next_depth_aspects_are_selected_beside_the_transitions(tmp_path: Path, embedder: Embedder) -> None:
    """From depth 2 on, a depth's aspect selection overlaps the previous depth's transition requests,
    so a depth costs three rounds of requests: generate, evaluate, transition."""
    log = tmp_path / "requests.jsonl"
    with FakeOpenAIServer(log_path=log, latency=0.1) as server:
        # slots for both depth-2 transitions and the aspect request: with fewer, which one waits is a race
        config = fake_server_config(
            tmp_path / "config.yaml", server.base_url, depth=3, max_depth_increase=0, concurrency=4
        )
        settings = load_settings(config, {"runs_dir": str(tmp_path / "runs"), "store_dir": str(tmp_path / "s")})
        outcome = optimize(settings, embedder=embedder)
    assert outcome.result is not None and outcome.result["depths_run"] == 3
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    aspects = sorted((e for e in entries if e["task"] == "aspects"), key=lambda e: e["start"])
    transitions = sorted((e for e in entries if e["task"] == "transition"), key=lambda e: e["start"])
    answers = sorted((e for e in entries if e["task"] == "answer"), key=lambda e: e["start"])
    assert len(aspects) == 3
    # depth 1 prepares first; depths 2 and 3 were prepared while a transition request was in flight
    assert aspects[0]["end"] <= answers[0]["start"] + 0.05
    for prepared in aspects[1:]:
        assert any(t["start"] < prepared["end"] and prepared["start"] < t["end"] for t in transitions)


HEAVY_MODULES = ("langgraph", "chromadb", "torch", "openai", "langchain_openai", "sentence_transformers", "uvicorn")


@pytest.mark.parametrize(
    "command", [["--help"], ["optimize", "--help"], ["serve", "--help"], ["eval", "run", "--help"]]
)
def test_help_and_argument_parsing_import_no_heavy_library(command: list[str]) -> None:
    """Each of these takes a second or more to import; the CLI must answer --help (and parse arguments) without."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from drpo.cli.app import app\n"
        "try:\n"
        f"    app({command!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('LOADED', sorted({{n.split('.')[0] for n in sys.modules}} & set({HEAVY_MODULES!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rsplit("LOADED", 1)[1].strip() == "[]"


def test_the_first_depth_does_not_wait_for_chroma(
    make_settings, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a warm store the first depth's examples come from cached vectors: its first answer is asked
    while Chroma is still opening (held here until that answer arrives), and the run's result is the
    same as when Chroma opened at once."""
    import drpo.run.services as services_module
    from support.responder import respond, task_of
    from support.runs import roles, run
    from support.scripted import ScriptedChatModel

    settings = make_settings(depth=2, beam_width=1, num_actions=2, max_depth_increase=0, icl_k=2)
    unhindered = run(settings, roles(ScriptedChatModel(responder=respond)), embedder, "warm").result
    answered = threading.Event()

    def responder(text: str, sample: int) -> str:
        if task_of(text) == "answer":
            answered.set()
        return respond(text, sample)

    real_open = services_module.open_icl_stores

    def open_after_the_first_answer(*args: object) -> object:
        if not answered.wait(30):
            raise AssertionError("the first answer waited for Chroma to open")
        return real_open(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(services_module, "open_icl_stores", open_after_the_first_answer)
    held = run(settings, roles(ScriptedChatModel(responder=responder)), embedder, "held").result
    assert answered.is_set()
    assert held["best_prompt"] == unhindered["best_prompt"]
    assert held["depths"] == unhindered["depths"]  # same candidates, rewards and beams


def two_depths_on_one_store(tmp_path: Path, base_url: str) -> tuple[Path, Settings]:
    """A two-depth search on the fake server whose every run shares one store (the second run's is warm)."""
    import yaml

    config = fake_server_config(tmp_path / "config.yaml", base_url, depth=2, max_depth_increase=0)
    data = yaml.safe_load(config.read_text())
    data["store_dir"] = str(tmp_path / "store")
    config.write_text(yaml.safe_dump(data))
    return config, load_settings(config, {"runs_dir": str(tmp_path / "runs")})


REQUEST_THREADS = ("drpo-first-answer", "drpo-n-probe", "drpo-request")
RECORD_IMPORTS = r"""
import os, sys, threading, time
record = open(os.environ["IMPORT_LOG"], "a", buffering=1)

class Recorder:
    def find_spec(self, name, path=None, target=None):
        record.write(f"{time.time()}\t{threading.current_thread().name}\t{name}\n")
        return None

sys.meta_path.insert(0, Recorder())
sys.argv = ["drpo", *sys.argv[1:]]
from drpo.cli.app import main
main()
"""


def test_no_other_thread_imports_while_the_warm_up_imports_chroma(tmp_path: Path, embedder: Embedder) -> None:
    """Python's imports are not safe against two threads importing parts of one package tree at once (each
    can see the other's module half-initialized). On a warm store the first requests are built while the
    warm-up thread imports Chroma, so everything those requests import lazily is imported before the run's
    threads start (drpo.run.services.MODULES_USED_LAZILY). A new lazy import on the request path fails here."""
    import subprocess
    import sys

    from support.cli import cli_env

    requests = tmp_path / "requests.jsonl"
    with FakeOpenAIServer(log_path=requests) as server:
        config, settings = two_depths_on_one_store(tmp_path, server.base_url)
        assert optimize(settings, embedder=embedder).result is not None  # fills the store's embedding cache
        log = tmp_path / "imports.tsv"
        command = [sys.executable, "-c", RECORD_IMPORTS, "optimize", "--config", str(config)]
        command += ["--runs-dir", str(tmp_path / "runs"), "--run-id", "recorded"]
        done = subprocess.run(
            command, env={**cli_env(), "IMPORT_LOG": str(log)}, capture_output=True, text=True, timeout=240, check=False
        )
    assert done.returncode == 0, done.stderr[-2000:]
    records = [line.split("\t") for line in log.read_text().splitlines()]
    warm_up = [float(at) for at, thread, _ in records if thread == "drpo-warm-up"]
    assert any(name.startswith("chromadb") for _, thread, name in records if thread == "drpo-warm-up")
    during = [(thread, name) for at, thread, name in records if warm_up[0] <= float(at) <= warm_up[-1]]
    beside = [(thread, name) for thread, name in during if thread != "drpo-warm-up"]
    assert beside == []
    # the search's requests go through drpo's own chat client: the openai SDK's half second is never spent
    sdk = sorted({name for _, _, name in records if name.split(".")[0] in {"openai", "langchain_openai"}})
    assert sdk == []
    # threads that run while the main thread imports LangGraph (a new run's first answers, the n probe, their
    # requests) must import nothing at all
    requesting = sorted({(thread, name) for _, thread, name in records if thread.startswith(REQUEST_THREADS)})
    assert requesting == []
    # and the recorded run did ask its first answer before LangGraph's import was done (the prompt graph imports
    # its nodes right after LangGraph)
    graph_built = min(float(at) for at, _, name in records if name == "drpo.nodes.evaluate")
    logged = [json.loads(line) for line in requests.read_text().splitlines()]
    began = float(records[0][0])
    answers = [entry["start"] for entry in logged if entry["task"] == "answer" and entry["start"] > began]
    assert min(answers) < graph_built


def test_what_a_new_runs_first_answers_need_imports_no_langgraph_or_chroma() -> None:
    """A new run's first answers go out before the graph is built, so the modules they need must not import
    LangGraph, Chroma, LangChain's model classes or the openai SDK, or those imports would come first again."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import drpo.run.driver, drpo.run.services, drpo.run.first_answers\n"
        "heavy = {'langgraph', 'chromadb', 'openai', 'langchain_openai', 'langsmith'}\n"
        "print('LOADED', sorted({n.split('.')[0] for n in sys.modules} & heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rsplit("LOADED", 1)[1].strip() == "[]"


def test_a_new_runs_first_answers_and_verdicts_go_out_before_the_graph_opens(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a warm store (vectors and aspects cached) the first depth's answers and their verdicts are asked
    before the graph is opened; the generate and evaluate nodes then read them from the journal: no request
    is made twice and the search is the same."""
    import time
    from collections import Counter

    import drpo.run.driver as driver_module

    log = tmp_path / "requests.jsonl"

    def logged() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    with FakeOpenAIServer(log_path=log) as server:
        _, settings = two_depths_on_one_store(tmp_path, server.base_url)
        unhindered = optimize(settings, embedder=embedder).result  # fills the store: vectors, aspects
        before = len(logged())
        seen_before_graph: list[set[str]] = []
        real_open_graph = driver_module.open_graph

        def open_graph_after_the_first_rounds(*args: object, **kwargs: object) -> object:
            waited = time.monotonic() + 10
            while not {"answer", "evaluate"} <= {entry["task"] for entry in logged()[before:]}:
                if time.monotonic() > waited:
                    break
                time.sleep(0.01)
            seen_before_graph.append({entry["task"] for entry in logged()[before:]})
            return real_open_graph(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(driver_module, "open_graph", open_graph_after_the_first_rounds)
        early = optimize(settings, embedder=embedder).result
    assert {"answer", "evaluate"} <= seen_before_graph[0]
    asked = Counter(entry["hash"] for entry in logged()[before:] if entry["task"] in {"answer", "evaluate"})
    assert max(asked.values()) == 1  # each node read the early reply from the journal, it did not ask again
    assert early["depths"] == unhindered["depths"] and early["best_prompt"] == unhindered["best_prompt"]
    # the same usage, but for the aspect selections the first run made and the second found in the cache
    assert early["usage"] == {role: unhindered["usage"][role] for role in early["usage"]}


def test_a_model_called_through_langchain_asks_nothing_early(make_settings, embedder: Embedder, tmp_path: Path) -> None:
    """A model handed in from Python may import modules as it runs, and the early answers run while LangGraph
    is imported: only roles on drpo's own chat client ask early."""
    from drpo.run.first_answers import ask_first_answers
    from support.responder import respond
    from support.runs import roles, run
    from support.scripted import ScriptedChatModel

    settings = make_settings(depth=2, beam_width=1, num_actions=2, max_depth_increase=0, icl_k=2)
    run(settings, roles(ScriptedChatModel(responder=respond)), embedder, "warm")  # vectors and aspects cached
    run_dir = RunDir(tmp_path / "custom")
    run_dir.root.mkdir(parents=True)
    model = ScriptedChatModel(responder=respond)
    services = build_services(settings, run_dir, roles(model), embedder)
    assert services.nearest_from_cached_vectors(services.seed_order[:1]) is not None  # the store is warm
    assert ask_first_answers(services) == 0 and model.finished == []
    services.close()
