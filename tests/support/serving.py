"""``drpo serve`` as a subprocess on a free port, for tests: started, found by the URL it prints, stopped."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support.cli import DRPO, cli_env


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    stdout: Path
    stderr: Path

    def log_text(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()


def start_serve(work: Path, *args: str, name: str, env: dict[str, str] | None = None) -> Served:
    stdout, stderr = work / f"{name}.out", work / f"{name}.err"
    process = subprocess.Popen(
        [*DRPO, "serve", *args, "--port", "0"],
        cwd=work, env={**cli_env(), **(env or {})}, stdout=stdout.open("w"), stderr=stderr.open("w"), text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"at (http://\S+/v1)", stdout.read_text())
        if found:
            return Served(process, found.group(1), stdout, stderr)
        if process.poll() is not None:
            raise AssertionError(f"drpo serve exited: {stderr.read_text()}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError("drpo serve did not start")


def stop(served: Served) -> None:
    served.process.terminate()
    served.process.wait(timeout=30)
