"""Use a finished drpo run inside a LangChain (LCEL) chain.

    python examples/aligned_chain.py RUN_ID [--runs-dir drpo_runs] [--local-model smollm2-135m]

The aligned model retrieves the nearest optimized examples for each request, puts the run's
optimized system prompt first and calls the run's base model (or the local model given).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from drpo import AlignedChatModel
from drpo.serve.runs import run_base_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_id")
    parser.add_argument("--runs-dir", default="drpo_runs")
    parser.add_argument("--local-model", default=None)
    args = parser.parse_args()
    llm, _server_pool = run_base_model(Path(args.run_id), Path(args.runs_dir), args.local_model)
    aligned = AlignedChatModel.from_run(args.run_id, llm, runs_dir=args.runs_dir)
    chain = (
        ChatPromptTemplate.from_messages([("human", "Give a beginner three tips about {topic}.")])
        | aligned
        | StrOutputParser()
    )
    for chunk in chain.stream({"topic": "saving money"}):
        print(chunk, end="", flush=True)
    print()


if __name__ == "__main__":
    main()
