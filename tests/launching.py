"""Processes the tests start beside them: a free port, and `accelerate launch` runs of the harness CLI on
CPU processes (gloo), killed midway for the resume tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accelerate_launch(*harness_args: str, processes: int = 2) -> list[str]:
    """The command running `harness <harness_args>` under `accelerate launch` in `processes` CPU processes,
    on a free port (a new one each call, so a relaunch never waits for the last one's port)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), "-m", "harness", *harness_args,
    ]  # fmt: skip


def launch_environment() -> dict[str, str]:
    """This environment for a launched run: one thread per process, and without the tracking URI MLflow puts
    here for child processes (the launched run uses its config's store)."""
    environment = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    return environment | {"OMP_NUM_THREADS": "1"}


def kill_midway(command: list[str], finished: Callable[[], bool], timeout_s: float, cwd: Path | None = None) -> None:
    """Start `command` and, as soon as `finished()` says part of its work is done, SIGKILL it and every
    process it started (torch's launcher starts each worker in a session of its own, so its process group
    is not enough). Fails if it exits, or finishes nothing, before that."""
    process = subprocess.Popen(
        command, cwd=cwd, env=launch_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout_s
    while not finished():
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no work finished in time"
        time.sleep(0.2)
    for launched in [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]:
        launched.send_signal(signal.SIGKILL)
    process.wait()
