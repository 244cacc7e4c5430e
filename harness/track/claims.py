"""A claim in the store on a variant key: one machine at a time runs a key, whatever machines share the store.

The run lock (runs.variant_lock) is an flock, so it serialises the processes of one machine only. Inside it a
process also claims the key in the store, which every machine reads: it writes a claim of its own (an experiment
tag `harness.claim.<key hash>.<claim id>`) and reads every claim of the key. MLflow has no "create unless it
exists", so the rule needs only writes and reads (docs/reliability.md):

- A claimant goes on only when it reads no live claim but its own. Of two that went on, the later writer read
  after the earlier one had written, so it saw that claim: two never hold a key at once.
- Claims that meet all agree on the earliest (a claim id starts with its writer's clock time, then a random
  part): the others withdraw theirs and try again after a short pause, the earliest reads again, alone.
- A held claim (its holder runs the key) makes the others wait for its end, as the flock does, and they then
  look the key up again: its run finished (skipped) or unfinished (resumed).
- A holder beats (changes its claim's value) every CLAIM_BEAT_S. A claim that a waiter sees unchanged for
  CLAIM_STALE_S, or whose process on this host is gone, is stale: removed and ignored, so the claim of a machine
  that died never blocks its key.

So a key running on another machine is never run again beside it, and a claimant that waits writes no run.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace

from harness.errors import HarnessWarning

CLAIM_TAG_PREFIX = "harness.claim."
CLAIM_BEAT_S = 5.0  # how often a holder shows it is alive
CLAIM_STALE_S = 60.0  # a claim unchanged this long, as a waiter sees it, is a dead machine's
CLAIM_POLL_S = 2.0  # how often a waiter reads a held claim
CLAIM_BACKOFF_S = 0.3  # the most a withdrawn claimant pauses before it claims again
PENDING = "pending"
HELD = "held"


@dataclass(frozen=True)
class Claim:
    """One claimant's view of a claim: its tag, its state and who wrote it."""

    tag: str
    state: str
    host: str
    pid: int
    run_name: str
    beat: int

    @property
    def claim_id(self) -> str:
        return self.tag.rsplit(".", 1)[1]

    def value(self) -> str:
        """The tag's value: all but the tag itself."""
        fields = {"state": self.state, "host": self.host, "pid": self.pid, "run": self.run_name, "beat": self.beat}
        return json.dumps(fields)


def new_claim_id() -> str:
    """An id that orders claims by their writer's clock (milliseconds), ties broken by a random part."""
    return f"{time.time_ns() // 1_000_000:013d}-{uuid.uuid4().hex[:12]}"


def claim_tag(scope: str, claim_id: str) -> str:
    return f"{CLAIM_TAG_PREFIX}{scope}.{claim_id}"


def read_claims(tags: dict[str, str], scope: str) -> list[Claim]:
    """The claims of one key (`scope`) among an experiment's tags, earliest first; unreadable ones left out."""
    prefix = f"{CLAIM_TAG_PREFIX}{scope}."
    claims = []
    for tag, value in tags.items():
        if not tag.startswith(prefix):
            continue
        with suppress(ValueError, KeyError, TypeError):
            fields = json.loads(value)
            claims.append(
                Claim(tag, fields["state"], fields["host"], int(fields["pid"]), fields["run"], int(fields["beat"]))
            )
    return sorted(claims, key=lambda claim: claim.claim_id)


def verdict(own: Claim, rivals: list[Claim]) -> str:
    """What a claimant does on reading the live claims of its key besides its own, the same for every claimant:
    "go" (alone), "wait" (another holds it: the key is being run), "withdraw" (an earlier claim is pending) or
    "stay" (the earliest pending: the others withdraw, read again)."""
    if not rivals:
        return "go"
    if any(rival.state == HELD for rival in rivals):
        return "wait"
    return "withdraw" if rivals[0].claim_id < own.claim_id else "stay"


class _Staleness:
    """When a waiter last saw each claim change, by its own clock: a dead holder's claim stops changing. Needs no
    agreement between the machines' clocks."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, str, float]] = {}

    def is_stale(self, claim: Claim) -> bool:
        if claim.host == socket.gethostname() and not process_alive(claim.pid):
            return True
        now = time.monotonic()
        beat, state, since = self._seen.get(claim.tag, (-1, "", now))
        if (beat, state) != (claim.beat, claim.state):
            since = now
        self._seen[claim.tag] = (claim.beat, claim.state, since)
        return now - since >= CLAIM_STALE_S


def process_alive(pid: int) -> bool:
    """Whether a process of this host is alive (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def claimed(tracking_uri: str, experiment_id: str, scope: str, run_name: str) -> Iterator[None]:
    """Hold the store's claim on one key (`scope`, a hash of the experiment and variant key) for the block: wait
    while another machine holds it, saying so once; beat while holding; withdraw at the end, whatever ends it."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    claim = Claim(claim_tag(scope, new_claim_id()), PENDING, socket.gethostname(), os.getpid(), run_name, 0)
    stop = threading.Event()
    beating: threading.Thread | None = None
    try:
        claim = _acquire(client, experiment_id, scope, claim)
        beating = threading.Thread(target=_beat, args=(client, experiment_id, claim, stop), daemon=True)
        beating.start()
        yield
    finally:
        stop.set()
        if beating is not None:
            beating.join()
        _withdraw(client, experiment_id, claim)  # a claim left behind (the store failed) goes stale


def _acquire(client, experiment_id: str, scope: str, claim: Claim) -> Claim:
    staleness = _Staleness()
    told = False
    while True:
        claim = _write(client, experiment_id, claim, beat=claim.beat + 1)
        rivals = []
        for rival in read_claims(client.get_experiment(experiment_id).tags, scope):
            if rival.tag == claim.tag:
                continue
            if staleness.is_stale(rival):
                _remove_stale(client, experiment_id, rival)
            else:
                rivals.append(rival)
        action = verdict(claim, rivals)
        if action == "go":
            return _write(client, experiment_id, claim, state=HELD)
        if action == "stay":
            time.sleep(random.uniform(0.02, CLAIM_BACKOFF_S / 3))
            continue
        _withdraw(client, experiment_id, claim)
        if action == "wait":
            holder = next(rival for rival in rivals if rival.state == HELD)
            if not told:
                warnings.warn(
                    f"{claim.run_name!r} is being run on another machine ({holder.host}, pid {holder.pid}); "
                    "waiting for it to end, not running it twice",
                    HarnessWarning,
                    stacklevel=4,
                )
                told = True
            time.sleep(CLAIM_POLL_S)
        else:
            time.sleep(random.uniform(CLAIM_BACKOFF_S / 3, CLAIM_BACKOFF_S))


def _write(client, experiment_id: str, claim: Claim, **changes) -> Claim:
    updated = replace(claim, **changes)
    client.set_experiment_tag(experiment_id, claim.tag, updated.value())
    return updated


def _beat(client, experiment_id: str, claim: Claim, stop: threading.Event) -> None:
    while not stop.wait(CLAIM_BEAT_S):
        with suppress(Exception):  # a store hiccup: the next beat tries again (a long outage loses the claim)
            claim = _write(client, experiment_id, claim, beat=claim.beat + 1)


def _remove_stale(client, experiment_id: str, claim: Claim) -> None:
    warnings.warn(
        f"the claim on {claim.run_name!r} by {claim.host} (pid {claim.pid}) is stale: that process is gone or has "
        f"not shown it is alive for {CLAIM_STALE_S:.0f} s; it is removed and the run taken over",
        HarnessWarning,
        stacklevel=5,
    )
    _withdraw(client, experiment_id, claim)


def _withdraw(client, experiment_id: str, claim: Claim) -> None:
    """Remove a claim; one already gone (another waiter removed it as stale) is no error."""
    with suppress(Exception):
        client.delete_experiment_tag(experiment_id, claim.tag)
