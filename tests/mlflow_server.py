"""A real `mlflow server` on 127.0.0.1 for the tests that read a store over HTTP or open the MLflow UI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from launching import free_port


@contextmanager
def mlflow_server(backend_uri: str, folder: Path, *options: str, startup_timeout_s: float) -> Iterator[str]:
    """`mlflow server` for `backend_uri` (plus `options`) on a free port, run in `folder`; yields its URL.

    Its log goes to folder/server.log (a pipe nobody reads fills up and stalls the server); it runs in a
    process group of its own, so the server and the workers it starts stop together: SIGTERM, then SIGKILL
    when a loaded machine takes over 30 s to shut it down gracefully.
    """
    port = free_port()
    log = folder / "server.log"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *options]  # fmt: skip
    with log.open("wb") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if server.poll() is not None:
                pytest.fail(f"mlflow server exited ({server.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up after {startup_timeout_s} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
