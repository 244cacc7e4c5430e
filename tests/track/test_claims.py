"""The claim in the store on a variant key (harness/track/claims.py), against a real MLflow sqlite store: the
rule every claimant applies, claimants in threads of one process (each its own claim, as another machine's
would be), stale claims of dead processes, and variant_run waiting for a run another machine holds."""

from __future__ import annotations

import threading
import time

import mlflow
import pytest
from mlflow import MlflowClient

from harness.errors import HarnessWarning
from harness.track import claims
from harness.track.claims import HELD, PENDING, Claim, claim_tag, claimed, read_claims, verdict
from harness.track.runs import VARIANT_KEY_TAG, key_hash, variant_run
from harness.track.store import default_tracking_uri, ensure_experiment

SCOPE = "0123456789abcdef01234567"


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    uri = default_tracking_uri(tmp_path_factory.mktemp("claims") / "mlruns")
    ensure_experiment("set-up", uri)  # creating the sqlite store takes seconds: once for the module
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture()
def store(store_uri, request):
    """The store and an experiment of the test's own."""
    return store_uri, ensure_experiment(request.node.name, store_uri)


def _write(uri: str, experiment_id: str, claim_id: str, state: str, host: str = "machine-b", pid: int = 1) -> Claim:
    claim = Claim(claim_tag(SCOPE, claim_id), state, host, pid, "llm", 1)
    MlflowClient(uri).set_experiment_tag(experiment_id, claim.tag, claim.value())
    return claim


def _read(uri: str, experiment_id: str) -> list[Claim]:
    return read_claims(MlflowClient(uri).get_experiment(experiment_id).tags, SCOPE)


def test_two_claims_in_one_store_agree_on_one_winner(store):
    uri, experiment_id = store
    early = _write(uri, experiment_id, "1765100000000-aaaa", PENDING)
    late = _write(uri, experiment_id, "1765100000000-bbbb", PENDING)
    seen = _read(uri, experiment_id)
    assert [claim.tag for claim in seen] == [early.tag, late.tag]
    assert verdict(early, [claim for claim in seen if claim != early]) == "stay"
    assert verdict(late, [claim for claim in seen if claim != late]) == "withdraw"
    MlflowClient(uri).delete_experiment_tag(experiment_id, late.tag)
    assert verdict(early, [claim for claim in _read(uri, experiment_id) if claim != early]) == "go"


def test_a_held_claim_wins_over_an_earlier_stamped_newcomer(store):
    """A machine whose clock is behind stamps an earlier claim id: it still waits for the one already running."""
    uri, experiment_id = store
    holder = _write(uri, experiment_id, "1765100000500-bbbb", HELD)
    newcomer = _write(uri, experiment_id, "1765100000000-aaaa", PENDING)
    rivals = [claim for claim in _read(uri, experiment_id) if claim != newcomer]
    assert rivals == [holder] and verdict(newcomer, rivals) == "wait"


def test_claimants_at_once_hold_the_key_one_at_a_time(store, monkeypatch):
    uri, experiment_id = store
    monkeypatch.setattr(claims, "CLAIM_POLL_S", 0.05)
    holding, most, done = [0], [0], []
    count = threading.Lock()
    start = threading.Barrier(4)

    def claimant(number: int) -> None:
        start.wait()
        with claimed(uri, experiment_id, SCOPE, f"claimant {number}"):
            with count:
                holding[0] += 1
                most[0] = max(most[0], holding[0])
            time.sleep(0.2)
            with count:
                holding[0] -= 1
        done.append(number)

    with pytest.warns(HarnessWarning, match="is being run on another machine"):
        threads = [threading.Thread(target=claimant, args=(number,)) for number in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert sorted(done) == [0, 1, 2, 3]
    assert most[0] == 1
    assert _read(uri, experiment_id) == []  # every claim withdrawn at its end


def test_the_claim_of_a_dead_process_on_this_host_is_removed_at_once(store):
    import socket

    uri, experiment_id = store
    dead = _write(uri, experiment_id, "1765100000000-aaaa", HELD, host=socket.gethostname(), pid=2**22 + 7)
    with pytest.warns(HarnessWarning, match="is stale"), claimed(uri, experiment_id, SCOPE, "llm"):
        assert [claim.state for claim in _read(uri, experiment_id)] == [HELD]
        assert dead.tag not in MlflowClient(uri).get_experiment(experiment_id).tags


def test_a_claim_that_stops_beating_is_taken_over(store, monkeypatch):
    uri, experiment_id = store
    monkeypatch.setattr(claims, "CLAIM_STALE_S", 0.5)
    monkeypatch.setattr(claims, "CLAIM_POLL_S", 0.1)
    _write(uri, experiment_id, "1765100000000-aaaa", HELD, host="a-machine-that-died")
    began = time.monotonic()
    with pytest.warns(HarnessWarning) as told, claimed(uri, experiment_id, SCOPE, "llm"):
        waited = time.monotonic() - began
    assert 0.5 <= waited < 10
    said = [str(warning.message) for warning in told]
    assert "being run on another machine (a-machine-that-died, pid 1)" in said[0] and "is stale" in said[-1]


def test_a_live_holder_that_beats_is_never_taken_over(store, monkeypatch):
    uri, experiment_id = store
    monkeypatch.setattr(claims, "CLAIM_BEAT_S", 0.1)
    monkeypatch.setattr(claims, "CLAIM_STALE_S", 0.6)
    monkeypatch.setattr(claims, "CLAIM_POLL_S", 0.1)
    order = []

    def holder() -> None:
        with claimed(uri, experiment_id, SCOPE, "first"):
            order.append("first in")
            time.sleep(2.0)  # beats all along: over three times CLAIM_STALE_S
            order.append("first out")

    thread = threading.Thread(target=holder)
    thread.start()
    while not order:
        time.sleep(0.01)
    with (
        pytest.warns(HarnessWarning, match="being run on another machine"),
        claimed(uri, experiment_id, SCOPE, "second"),
    ):
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]


def test_variant_run_waits_for_another_machines_run_then_skips_it(store, monkeypatch):
    """Another machine holds the key's claim and finishes its run: this process waits (one line), opens no run
    and finds that run finished."""
    uri, experiment_id = store
    monkeypatch.setattr(claims, "CLAIM_POLL_S", 0.1)
    client = MlflowClient(uri)
    scope = key_hash(experiment_id, "key-a")
    other = Claim(claim_tag(scope, "1765100000000-aaaa"), HELD, "machine-b", 1, "a", 1)
    client.set_experiment_tag(experiment_id, other.tag, other.value())

    def other_machine_finishes() -> None:
        time.sleep(0.5)
        run = client.create_run(experiment_id, run_name="a", tags={VARIANT_KEY_TAG: "key-a"})
        client.set_terminated(run.info.run_id, "FINISHED")
        client.delete_experiment_tag(experiment_id, other.tag)

    thread = threading.Thread(target=other_machine_finishes)
    thread.start()
    with pytest.warns(HarnessWarning, match=r"'a' is being run on another machine \(machine-b, pid 1\)"):
        with variant_run(experiment_id, "key-a", "a") as tracked:
            pass
    thread.join()
    assert tracked.skipped
    assert [run.info.run_id for run in client.search_runs([experiment_id])] == [tracked.run_id]
