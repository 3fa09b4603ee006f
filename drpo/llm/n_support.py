"""Whether an OpenAI-compatible server answers ``n`` samples in one request.

Asking for the optimizer's M samples with ``n`` makes one request instead of M (the paper's
request count). Servers differ: vLLM and OpenAI honour ``n``, others ignore it and return one
choice, some reject it. One tiny probe per server tells, and the store remembers the answer.
The run's journal records the decision too, so a resumed run keys its calls the same way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from langchain_core.messages import HumanMessage

from drpo.llm.chat_client import reply_choices
from drpo.llm.retry import reply_shape_checked
from drpo.store.call_journal import CallJournal, call_key
from drpo.store.server_features import ServerFeatures

if TYPE_CHECKING:
    from drpo.llm.caller import RoleCaller

log = logging.getLogger(__name__)
FEATURE = "chat_n"
PROBE_TEXT = "Reply with OK."
REFUSED = {400, 422}  # a server that rejects ``n`` outright


def probe_n(caller: RoleCaller) -> bool:
    """Ask for two one-token choices: True when two come back, False when one does or the server refuses
    ``n`` (400/422). Transport faults are retried like any call; one that never heals stops the run."""
    probe = {"n": 2, "max_tokens": 1, "temperature": 1.0}
    route = caller.route

    def ask() -> bool:
        try:
            if route is not None:
                return len(reply_choices(route.send([HumanMessage(content=PROBE_TEXT)], probe))) == 2
            with reply_shape_checked(openai_style=True):
                result = caller.model.generate([[HumanMessage(content=PROBE_TEXT)]], **probe)
            return len(result.generations[0]) == 2
        except Exception as error:
            if getattr(error, "status_code", None) in REFUSED:
                return False
            raise

    return caller.request(ask)


def decide_n(caller: RoleCaller, journal: CallJournal, features: ServerFeatures) -> bool:
    """This run's answer: the journal's (a resumed run), else the store's, else a probe's."""
    base_url, model_name = str(caller.spec.base_url), caller.spec.model
    key = call_key({"feature": FEATURE, "server": base_url.rstrip("/"), "model": model_name})
    recorded = journal.get_call(key)
    if recorded is not None:
        return bool(recorded["supported"])
    supported = features.get(FEATURE, base_url, model_name)
    if supported is None:
        supported = probe_n(caller)
        features.put(FEATURE, base_url, model_name, supported)
        log.info("server %s (%s) %s n", base_url, model_name, "supports" if supported else "does not support")
    journal.put_call(key, {"feature": FEATURE, "supported": supported})
    return supported
