"""Deterministic stand-in for every DRPO role, recognizing our meta-prompts by their task line.

Replies are derived from a hash of the request text and the sample index, so the same
request always gets the same reply and M samples differ. Shared by the in-process scripted
chat model and the fake OpenAI-compatible HTTP server.
"""

from __future__ import annotations

import hashlib
import json
import re

ASPECT_TASK = "## Task: aspect selection"
EVAL_TASK = "## Task: evaluation"
TRANSITION_TASK = "## Task: system prompt rewrite"
REWRITE_TASK = "## Task: answer rewrite"
GRADE_TASK = "## Task: grade a response"
PAIR_TASK = "## Task: compare two responses"
RELATIVE_TASK = "## Task: relative evaluation"
ASPECT_POOL = ["Helpfulness", "Clarity", "Factuality", "Depth", "Engagement", "Safety", "Limitations"]


def digest(*parts: object) -> int:
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def task_of(text: str) -> str:
    if ASPECT_TASK in text:
        return "aspects"
    if EVAL_TASK in text:
        return "evaluate"
    if RELATIVE_TASK in text:
        return "relative"
    if TRANSITION_TASK in text:
        return "transition"
    if REWRITE_TASK in text:
        return "rewrite"
    if GRADE_TASK in text:
        return "grade"
    if PAIR_TASK in text:
        return "pair"
    return "answer"


def _between(text: str, start: str, end: str) -> str:
    match = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), text, re.DOTALL)
    return match.group(1) if match else ""


def aspects_reply(prompt: str) -> str:
    query = _between(prompt, "<query>", "</query>")
    h = digest("aspects", query)
    count = 2 + h % 3
    start = h % len(ASPECT_POOL)
    chosen = [ASPECT_POOL[(start + i) % len(ASPECT_POOL)] for i in range(count)]
    return json.dumps(
        {
            "query_analysis": {
                "main_topic": query[:40],
                "user_intent": "learn",
                "ambiguities": "none",
                "response_format": "prose",
                "challenges": "none",
            },
            "aspects_selection": {"reasoning": f"chosen for {query[:30]}", "selected_aspects": chosen},
        }
    )


def evaluate_reply(prompt: str) -> str:
    output = _between(prompt, "<output>", "</output>")
    aspects = re.findall(r"^- ([A-Za-z-]+):", prompt.split("## Aspects to rate", 1)[1], re.MULTILINE)
    verdict = {}
    for aspect in aspects:
        score = 1 + digest("score", aspect, output) % 5
        verdict[aspect] = {"rationale": f"{aspect} looks {score}", "score": str(score)}
    return "Here is my evaluation:\n```json\n" + json.dumps(verdict) + "\n```"


def relative_reply(prompt: str) -> str:
    """Scores of response B against response A, from a hash of both."""
    reference = _between(prompt, "<response_a>", "</response_a>")
    output = _between(prompt, "<response_b>", "</response_b>")
    aspects = re.findall(r"^- ([A-Za-z-]+):", prompt.split("## Aspects to compare", 1)[1], re.MULTILINE)
    verdict = {}
    for aspect in aspects:
        score = 1 + digest("relative", aspect, output, reference) % 5
        verdict[aspect] = {"rationale": f"B is {score} against A", "score": score}
    return json.dumps(verdict)


def transition_reply(prompt: str, sample: int) -> str:
    current = _between(prompt, "<current_system_prompt>", "</current_system_prompt>")
    tag = digest("transition", prompt, sample) % 100000
    new_prompt = f"{current.splitlines()[0][:80]}\n- Tip {tag}: be clear and honest."
    return json.dumps({"analysis": "ok", "thought": f"variant {tag}", "new_system_prompt": new_prompt})


def rewrite_reply(prompt: str, sample: int) -> str:
    current = _between(prompt, "<output>", "</output>")
    tag = digest("rewrite", prompt, sample) % 100000
    return json.dumps({"analysis": "a", "thought": "t", "new_response": f"{current.splitlines()[0][:60]} (v{tag})"})


def answer_reply(text: str) -> str:
    return f"Answer {digest('answer', text) % 10**6}: a helpful reply."


def grade_reply(prompt: str) -> str:
    """Evaluation grades from a hash of the response: Factuality is N/A for one response in seven."""
    response = _between(prompt, "<response>", "</response>")
    aspects = re.findall(r"^- ([A-Za-z-]+):", prompt.split("## Aspects", 1)[1].split("## Scale", 1)[0], re.MULTILINE)
    grades = {}
    for aspect in aspects:
        h = digest("grade", aspect, response)
        score: object = 1 + h % 5
        if aspect == "Factuality" and digest("na", response) % 7 == 0:
            score = "N/A"
        grades[aspect] = {"rationale": f"{aspect} graded", "score": score}
    return json.dumps(grades)


def pair_reply(prompt: str) -> str:
    """The response with the larger hash wins, whatever the order (a judge without position bias)."""
    first = _between(prompt, "<response_a>", "</response_a>")
    second = _between(prompt, "<response_b>", "</response_b>")
    a, b = digest("pair", first), digest("pair", second)
    return json.dumps({"rationale": "compared", "winner": "A" if a > b else "B" if b > a else "tie"})


def respond(text: str, sample: int = 0) -> str:
    """The reply to a request whose messages are joined into ``text``."""
    task = task_of(text)
    if task == "aspects":
        return aspects_reply(text)
    if task == "evaluate":
        return evaluate_reply(text)
    if task == "relative":
        return relative_reply(text)
    if task == "transition":
        return transition_reply(text, sample)
    if task == "rewrite":
        return rewrite_reply(text, sample)
    if task == "grade":
        return grade_reply(text)
    if task == "pair":
        return pair_reply(text)
    return answer_reply(text)
