"""Two identical requests in flight at once are one call: the second waits and reads the journal."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from langchain_core.messages import HumanMessage

from drpo.llm.caller import CallerDeps, CallStats, RoleCaller
from drpo.settings import RoleSpec
from drpo.store.call_journal import CallJournal
from support.scripted import ScriptedChatModel


def test_identical_requests_in_flight_together_make_one_call(tmp_path: Path) -> None:
    def slow(text: str, sample: int) -> str:
        time.sleep(0.2)
        return f"reply to {len(text)}"

    model = ScriptedChatModel(responder=slow)
    deps = CallerDeps(
        journal=CallJournal.sqlite(tmp_path / "journal.sqlite"),
        limiter=threading.BoundedSemaphore(4),
        stats=CallStats(),
        seed=0,
    )
    caller = RoleCaller("base", RoleSpec(), model, "custom:m", deps, openai_style=False)
    same = [HumanMessage(content="the same question")]
    other = [HumanMessage(content="another question")]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda request: caller.complete(request), [same, same, same, other]))
    assert len(model.finished) == 2  # one per distinct request
    assert len({outcome.text for outcome in outcomes[:3]}) == 1
    assert sum(outcome.from_journal for outcome in outcomes) == 2 and deps.stats.journal_hits == 2
