"""Render a self-contained HTML report in Debian's headless Chromium and read back what it drew."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
]
# After load, write what rendered into the DOM: images decoded (with their pixel widths) and tables.
PROBE = """<script>
window.addEventListener('load', () => {
  const images = [...document.images].map(i => i.complete ? i.naturalWidth : 0);
  const out = document.createElement('pre');
  out.id = 'render-probe';
  out.textContent = 'images=' + images.join(',') + ';tables=' + document.querySelectorAll('table').length;
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise AssertionError("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    return found


def render(html_file: Path) -> dict[str, object]:
    """Image widths as decoded by the browser, the number of tables, and a screenshot's size in bytes."""
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "page.html"
        probe.write_text(html_file.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
        profile = ["--user-data-dir=" + str(Path(folder) / "profile")]
        dom = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, *profile, "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        shot = Path(folder) / "shot.png"
        subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, *profile, f"--screenshot={shot}", "--window-size=1200,1600", probe.as_uri()],
            capture_output=True, timeout=120, check=True,
        )  # fmt: skip
        match = re.search(r"images=([\d,]*);tables=(\d+)", dom)
        assert match is not None, "the page did not finish loading in the browser"
        widths = [int(width) for width in match.group(1).split(",") if width]
        return {"image_widths": widths, "tables": int(match.group(2)), "screenshot_bytes": shot.stat().st_size}
