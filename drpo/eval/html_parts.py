"""Pieces both HTML reports (evaluation and search) build from: number cells, figures as PNG bytes, and
figures embedded in the page as data URIs, so each page stays one self-contained file."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping
from typing import Any


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def png_bytes(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def embedded_figures(pictures: Mapping[str, bytes], captions: Iterable[tuple[str, str]]) -> str:
    """<figure> elements for the pictures present, in the captions' order."""
    return "".join(
        f'<figure><img alt="{html.escape(key)}" src="data:image/png;base64,{base64.b64encode(pictures[key]).decode()}">'
        f"<figcaption>{caption}</figcaption></figure>"
        for key, caption in captions
        if key in pictures
    )
