"""Serving the `l2s ui` demo: Gradio's server with a theme and CSS that fetch nothing from the web (the
demo runs offline), and a port check that fails before the slow Gradio import.
"""

from __future__ import annotations

import os
import socket

from l2s.errors import UserError

# Columns side by side, the answer set apart from the stats, and no web fonts (the demo runs offline).
CSS = """
.l2s-col { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px; }
.l2s-stats { font-size: 0.92em; color: var(--body-text-color-subdued); }
.l2s-answer { min-height: 3em; max-height: 14em; overflow-y: auto; overflow-wrap: anywhere; }
"""


def theme():
    """A stock Gradio theme with system fonts only (the default one fetches web fonts)."""
    import gradio as gr

    return gr.themes.Soft(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )


def launch(demo, host: str = "127.0.0.1", port: int = 7860, *, block: bool = True):
    """Serve the demo; `block=False` returns at once (tests). Returns (app, local_url, share_url)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        return demo.queue().launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=not block,
            css=CSS,
            theme=theme(),
            footer_links=[],
            quiet=True,
            ssr_mode=False,
            show_error=False,
        )
    except OSError:
        raise UserError(
            f"cannot serve the UI on {host}:{port}: the port is in use; pick another --port"
        ) from None


def check_port_free(host: str, port: int) -> None:
    """Fail fast (before the slow Gradio import) when the UI's port is taken."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise UserError(
                f"cannot serve the UI on {host}:{port} ({e.strerror}); pick another --port"
            ) from None
