"""Start the loopback LLM server in its own process (so its work does not share the client's CPU)."""

from __future__ import annotations

import re
import subprocess
import sys


def start_loopback_process(code: str) -> tuple[subprocess.Popen, str]:
    """Run `code` (which starts a server and prints its URL first) and return the process and that URL."""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    match = re.search(r"http://127\.0\.0\.1:\d+/v1", process.stdout.readline())
    if match is None:
        process.kill()
        raise RuntimeError("the loopback server did not start")
    return process, match.group(0)
