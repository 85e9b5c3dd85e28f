"""Run the app in a background thread of this process: for tests, benchmarks and `l2s ui --serve`.

uvicorn serves on a socket bound here first (port 0 = any free port, no race with other processes);
the context manager returns once the lifespan has loaded the engines, and stops the server on exit.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import FastAPI

from l2s.errors import UserError
from l2s.server.settings import ServeSettings


@dataclass
class Running:
    url: str  # e.g. http://127.0.0.1:43121 (the OpenAI base_url is url + "/v1")
    app: FastAPI

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


@contextlib.contextmanager
def serve_in_thread(settings: ServeSettings, startup_timeout_s: float = 300.0) -> Iterator[Running]:
    import uvicorn

    from l2s.server.app import build_app

    settings.served_models()  # bad paths fail here as a UserError, not in the server thread
    settings.threshold()
    app = build_app(settings)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as e:  # surfaced to the caller below
            errors.append(e)

    thread = threading.Thread(target=run, name="l2s-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            if errors and isinstance(errors[0], UserError):
                raise errors[0]
            raise RuntimeError(
                f"l2s server did not start: {errors[0] if errors else 'timeout or startup failure'}"
            )
        time.sleep(0.05)
    try:
        yield Running(f"http://{settings.host}:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
