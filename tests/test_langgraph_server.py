"""The graph under a real ``langgraph dev`` server, driven through the SDK: progress events, a review
interrupt, its resume, and the run's files written by the server's nodes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from langgraph_sdk import get_sync_client

from support.fake_openai import FakeOpenAIServer
from support.servers import free_port, wait_for

PROJECT = Path(__file__).resolve().parent.parent


def start_dev_server(cwd: Path, config: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DRPO_SERVER_CONFIG": str(config),
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    langgraph = Path(sys.executable).parent / "langgraph"
    command = [str(langgraph), "dev", "--no-browser", "--no-reload", "--port", str(port)]
    command += ["--config", str(PROJECT / "langgraph.json")]
    log = (cwd / "server.log").open("wb")  # kept beside the test's files: the server's own account of a failure
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_a_review_round_trip_through_langgraph_dev(tmp_path: Path) -> None:
    with FakeOpenAIServer() as fake:
        role = {"provider": "openai_compatible", "base_url": fake.base_url, "model": "fake", "max_retries": 0}
        config = tmp_path / "server.yaml"
        settings = {
            "runs_dir": str(tmp_path / "runs"),
            "roles": {name: dict(role) for name in ("base", "optimizer", "evaluator", "aspect_selector")},
            "search": {"depth": 2, "review": True, "max_depth_increase": 0},
        }
        config.write_text(yaml.safe_dump(settings))
        port = free_port()
        server = start_dev_server(tmp_path, config, port)
        try:
            wait_for(f"http://127.0.0.1:{port}/ok", server)  # type: ignore[arg-type]
            client = get_sync_client(url=f"http://127.0.0.1:{port}")
            schema = client.assistants.get_schemas(client.assistants.search(graph_id="drpo")[0]["assistant_id"])
            assert "System prompt the search starts from" in json.dumps(schema["input_schema"])
            thread = client.threads.create()["thread_id"]
            events = [
                part.data
                for part in client.runs.stream(
                    thread, "drpo", input={"initial_prompt": "You are terse."}, stream_mode="custom"
                )
                if part.event == "custom"
            ]
            kinds = [event["event"] for event in events]
            assert kinds.count("depth_done") == 1 and kinds[-1] == "review_waiting"
            assert client.threads.get(thread)["status"] == "interrupted"
            state = client.threads.get_state(thread)
            assert state["next"] == ["review"]
            review = state["interrupts"][0]["value"]
            assert review["depth"] == 1 and review["beam"][0]["prompt"] == "You are terse."
            started = time.perf_counter()
            final = client.runs.wait(
                thread, "drpo", command={"resume": {"action": "add", "prompt": "Reviewer's own prompt."}}
            )
            round_trip = time.perf_counter() - started
            print(f"review resume round trip through langgraph dev: {round_trip:.2f}s")
            assert client.threads.get(thread)["status"] == "idle"
            assert final["stop_reason"] == "reached max depth" and final["best"]["prompt"]
            human = [record for record in final["candidates"].values() if record["origin"] == "human"]
            assert [record["prompt"] for record in human] == ["Reviewer's own prompt."]
            assert final["evaluations"][f"{human[0]['id']}|{final['queries']['2'][0]}"]["reward"] is not None
            result = json.loads((tmp_path / "runs" / thread / "result.json").read_text())
            assert result["best_prompt"] == final["best"]["prompt"] and "2" not in result["reviews"]
            assert result["reviews"]["1"]["decisions"] == [{"action": "add", "prompt": "Reviewer's own prompt."}]
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
