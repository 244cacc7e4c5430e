"""An OpenAI-compatible chat-completions server on 127.0.0.1, for tests and offline dry runs.

It answers `POST /v1/chat/completions` with a pluggable responder (any callable messages -> text; by
default the registered responder 'fade', harness.testing.responders) and injects faults per request (latency,
429 with Retry-After, 500, hang past the client's timeout, dropped connection, malformed / truncated /
wrong-id answers), counting every request it served, every fault it injected by kind and the most requests
it handled at once, so tests can check a client against what really happened on the wire. Clients reach it
through real litellm: model `openai/<any name>`, api_base = `server.url`. The server knows no prompt: what
an answer says is the responder's.

A request with `logprobs: true` gets OpenAI-shaped token log-probabilities: the ones a responder scripted
(a ScriptedAnswer), or else the answer cut into word, space and punctuation tokens, each one certain.
Every request's `response_format` is recorded (`server.response_formats`); a request with a JSON schema
gets the responder's answer in the schema's shape (see `fitted_to_schema`), as a constrained server would.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema

from harness.llm.logprobs import logprobs_content
from harness.llm.types import TokenLogprobs
from harness.registry import RESPONDERS


@dataclass(frozen=True)
class ScriptedAnswer:
    """An answer with the log-probabilities the server reports for it: its tokens, joined, are its text."""

    tokens: tuple[TokenLogprobs, ...]

    @property
    def text(self) -> str:
        return "".join(token for token, _ in self.tokens)


Responder = Callable[[list[dict[str, Any]]], "str | ScriptedAnswer"]
_PLAIN_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")

TRANSPORT_FAULTS = ("rate_limit", "server_error", "hang", "disconnect")
ANSWER_FAULTS = ("malformed", "truncated", "wrong_ids")
RECOVERABLE_FAULTS = ("latency", *TRANSPORT_FAULTS, *ANSWER_FAULTS)
# auth_error answers 401 and echoes the Authorization header, as some real servers do: a redaction test.
# no_choices answers 200 with `choices: []`; oversized answers 200 with an answer of `oversized_chars`.
FAULT_KINDS = (*RECOVERABLE_FAULTS, "auth_error", "no_choices", "oversized")
DEFAULT_RESPONDER = "fade"  # the responder a server answers with unless given one (harness.registry.RESPONDERS)

MALFORMED_ANSWER = '{"results": oops, [unclosed'


@dataclass(frozen=True)
class FaultPlan:
    """Which requests get which fault.

    Args:
        rate: share of requests that get a fault, drawn from `kinds`. The draw hashes the request body and
            how many times the server has seen that body, so it does not depend on arrival order: a run
            is reproducible under any concurrency.
        kinds: the fault kinds to draw from (FAULT_KINDS; by default the ones a client can recover from).
        sequence: faults for the first requests in arrival order (None = no fault); `rate` applies after.
        seed: changes which requests the draw hits.
        latency_s: delay added to every request.
        slow_s: extra delay of a 'latency' fault.
        retry_after_s: the Retry-After (seconds, may be fractional) sent with a 'rate_limit' fault.
        hang_s: how long a 'hang' holds the request before answering; set it past the client's timeout.
        oversized_chars: the length of an 'oversized' answer.
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = RECOVERABLE_FAULTS
    sequence: tuple[str | None, ...] = ()
    seed: int = 0
    latency_s: float = 0.0
    slow_s: float = 0.5
    retry_after_s: float = 0.05
    hang_s: float = 30.0
    oversized_chars: int = 10_000_000

    def __post_init__(self) -> None:
        unknown = sorted({kind for kind in (*self.kinds, *self.sequence) if kind is not None} - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {self.rate}")
        if self.rate > 0 and not self.kinds:
            raise ValueError("a fault rate > 0 needs at least one fault kind")

    def draw(self, body: bytes, occurrence: int) -> str | None:
        """The fault for the `occurrence`-th time (0-based) this request body arrives, or None."""
        if self.rate <= 0:
            return None
        digest = hashlib.sha256(f"{self.seed}:{occurrence}:".encode() + body).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 >= self.rate:
            return None
        return self.kinds[int.from_bytes(digest[8:16], "big") % len(self.kinds)]


def request_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema of an OpenAI `response_format` of type json_schema; None for any other."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema")
    return schema if isinstance(schema, dict) else None


def fitted_to_schema(text: str, schema: dict[str, Any]) -> str:
    """An answer in the schema's shape: as it is when it validates, else wrapped as the value of the schema's
    only property (a bare list for {"samples": [...]}, plain text for {"description": "..."}) when that
    validates; otherwise unchanged, so a test sees the mismatch."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if value is not None and validator.is_valid(value):
        return text
    properties = list(schema.get("properties") or ())
    if len(properties) == 1:
        for inner in (value, text):
            inner = _within_bounds(inner, schema["properties"][properties[0]])
            if validator.is_valid({properties[0]: inner}):
                return json.dumps({properties[0]: inner})
    return text


def _within_bounds(value: Any, schema: dict[str, Any]) -> Any:
    """A list or string cut to the schema's maxItems / maxLength (its items' too), as constrained decoding
    would stop it."""
    if isinstance(value, str):
        return value[: schema.get("maxLength", len(value))]
    if isinstance(value, list):
        return [_within_bounds(item, schema.get("items", {})) for item in value[: schema.get("maxItems", len(value))]]
    return value


def _with_wrong_ids(text: str) -> str | None:
    """A ratings dict with its first id replaced by one nobody asked for, plus an extra id; None if not a dict."""
    try:
        ratings = json.loads(text)
    except ValueError:
        return None
    if not isinstance(ratings, dict) or not ratings:
        return None
    ids = [int(key) for key in ratings if str(key).isdigit()]
    if not ids:
        return None
    wrong = max(ids) + 1000
    items = list(ratings.items())
    items[0] = (str(wrong), items[0][1])
    items.append((str(wrong + 1), 0))
    return json.dumps(dict(items))


@dataclass
class _ServerState:
    responder: Responder
    faults: FaultPlan
    accepts_logprobs: bool = True
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    injected: Counter = field(default_factory=Counter)
    authorizations: set[str] = field(default_factory=set)
    seen_bodies: Counter = field(default_factory=Counter)
    response_formats: list[Any] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    connections: int = 0
    open_connections: int = 0

    def admit(self, body: bytes, authorization: str | None, response_format: Any) -> str | None:
        """Count the request, keep its response_format, and choose its fault."""
        with self.lock:
            index = self.requests
            self.requests += 1
            self.response_formats.append(response_format)
            occurrence = self.seen_bodies[body]
            self.seen_bodies[body] += 1
            if authorization:
                self.authorizations.add(authorization)
            plan = self.faults
        if index < len(plan.sequence):
            return plan.sequence[index]
        return plan.draw(body, occurrence)

    def record(self, kind: str) -> None:
        with self.lock:
            self.injected[kind] += 1

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Count a chat request as in flight until its answer is sent (the peak proves a client's concurrency)."""
        with self.lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self.lock:
                self.in_flight -= 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Silent: tests and dry runs read the counters, not an access log."""

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        else:
            self._send_error(404, f"no route {self.path}; use POST /v1/chat/completions")

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send_error(404, f"no route {self.path}; use POST /v1/chat/completions")
            return
        with self.server.state.handling():
            self._chat_completion()

    def _chat_completion(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            request = json.loads(body)
            messages = request["messages"]
            if not isinstance(messages, list):
                raise TypeError("messages is not a list")
        except (ValueError, KeyError, TypeError) as error:
            self._send_error(400, f"bad request body: {error}")
            return
        state = self.server.state
        authorization = self.headers.get("Authorization")
        fault = state.admit(body, authorization, request.get("response_format"))
        if request.get("logprobs") and not state.accepts_logprobs:
            self._send_error(400, "logprobs is not supported by this model")
            return
        plan = state.faults
        if plan.latency_s:
            state.stopping.wait(plan.latency_s)
        if fault in (*TRANSPORT_FAULTS, "latency", "auth_error", "no_choices", "oversized"):
            state.record(fault)
        if fault == "auth_error":
            self._send_error(401, f"Incorrect API key provided: {authorization}")
            return
        if fault == "latency":
            state.stopping.wait(plan.slow_s)
        elif fault == "rate_limit":
            self._send_error(429, "rate limit reached (injected)", {"Retry-After": f"{plan.retry_after_s:g}"})
            return
        elif fault == "server_error":
            self._send_error(500, "internal server error (injected)")
            return
        elif fault == "disconnect":
            self.close_connection = True
            return
        elif fault == "hang":
            state.stopping.wait(plan.hang_s)
        try:
            answer = self._answer(messages, fault, request_schema(request.get("response_format")))
        except Exception as error:  # a broken responder answers 500 with its error, not a dropped connection
            self._send_error(500, f"the responder failed: {type(error).__name__}: {error}")
            return
        if fault == "oversized":
            answer = "x" * plan.oversized_chars
        completion = self._completion(request, messages, answer)
        if fault == "no_choices":
            completion["choices"] = []
        self._send_json(200, completion)

    def _answer(
        self, messages: list[dict[str, Any]], fault: str | None, schema: dict[str, Any] | None
    ) -> str | ScriptedAnswer:
        state = self.server.state
        answer = state.responder(messages)
        if schema is not None and isinstance(answer, str):
            answer = fitted_to_schema(answer, schema)
        if fault not in ANSWER_FAULTS:
            return answer
        text = answer.text if isinstance(answer, ScriptedAnswer) else answer
        if fault == "malformed":
            text = MALFORMED_ANSWER
        elif fault == "truncated":
            text = text[: max(1, len(text) // 2)]
        elif fault == "wrong_ids":
            corrupted = _with_wrong_ids(text)
            if corrupted is None:
                return answer  # not a ratings answer: nothing to corrupt, nothing injected
            text = corrupted
        state.record(fault)
        return text

    def _completion(
        self, request: dict[str, Any], messages: list[dict[str, Any]], answer: str | ScriptedAnswer
    ) -> dict[str, Any]:
        text = answer.text if isinstance(answer, ScriptedAnswer) else answer
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages if isinstance(m, dict))
        completion_tokens = len(text.split())
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }
        if request.get("logprobs"):
            tokens = (
                answer.tokens
                if isinstance(answer, ScriptedAnswer)
                else tuple((token, {token: 0.0}) for token in _PLAIN_TOKEN.findall(text))
            )
            choice["logprobs"] = {"content": logprobs_content(tokens, int(request.get("top_logprobs") or 0))}
        return {
            "id": f"chatcmpl-loopback-{self.server.state.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(request.get("model", "scripted")),
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _send_error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"error": {"message": message, "type": "loopback", "code": status}}, headers)

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout) and closed the connection
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 drops connection bursts from a concurrent client
    state: _ServerState

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """One TCP connection, from its accept to its close (counted: the proof a client reuses connections)."""
        with self.state.lock:
            self.state.connections += 1
            self.state.open_connections += 1
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.state.lock:
                self.state.open_connections -= 1


class LoopbackServer:
    """The server as a context manager: `with LoopbackServer() as server: ... server.url ...`.

    Args:
        responder: callable messages -> answer text; default the registered DEFAULT_RESPONDER.
        faults: the fault plan; can be replaced between phases with `server.faults = FaultPlan(...)`.
        host: loopback address to bind.
        port: 0 picks a free port.
        accepts_logprobs: False answers a request asking for log-probabilities with 400, as backends
            without them do.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        accepts_logprobs: bool = True,
    ) -> None:
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.state = _ServerState(
            responder=responder or RESPONDERS.get(DEFAULT_RESPONDER)(),
            faults=faults or FaultPlan(),
            accepts_logprobs=accepts_logprobs,
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The api_base to give litellm (OpenAI style, ending in /v1)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def faults(self) -> FaultPlan:
        return self._httpd.state.faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        with self._httpd.state.lock:
            self._httpd.state.faults = plan

    @property
    def requests(self) -> int:
        """Chat-completion requests received, faulty ones included."""
        with self._httpd.state.lock:
            return self._httpd.state.requests

    @property
    def injected(self) -> dict[str, int]:
        """Faults injected so far, by kind."""
        with self._httpd.state.lock:
            return dict(self._httpd.state.injected)

    @property
    def peak_in_flight(self) -> int:
        """The most chat requests this server was handling at one time."""
        with self._httpd.state.lock:
            return self._httpd.state.peak_in_flight

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        with self._httpd.state.lock:
            return self._httpd.state.connections

    @property
    def open_connections(self) -> int:
        """TCP connections open now (one closes here once its client closed it)."""
        with self._httpd.state.lock:
            return self._httpd.state.open_connections

    @property
    def authorizations(self) -> set[str]:
        """Authorization header values received (kept in memory only, so tests can prove a key was sent)."""
        with self._httpd.state.lock:
            return set(self._httpd.state.authorizations)

    @property
    def response_formats(self) -> list[Any]:
        """The `response_format` of every chat request received, in arrival order (None where it had none)."""
        with self._httpd.state.lock:
            return list(self._httpd.state.response_formats)

    def reset_counts(self) -> None:
        """Zero the request and fault counters (the per-body occurrence counts, the in-flight peak and the
        recorded response formats too)."""
        state = self._httpd.state
        with state.lock:
            state.requests = 0
            state.injected.clear()
            state.seen_bodies.clear()
            state.peak_in_flight = state.in_flight
            state.response_formats.clear()

    def start(self) -> LoopbackServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="loopback-llm", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.state.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C)."""
        try:
            self._httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._httpd.state.stopping.set()
            self._httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _stop_serving(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(
    host: str = "127.0.0.1", port: int = 8765, responder_name: str = DEFAULT_RESPONDER, latency_s: float = 0.0
) -> None:
    """Run the server in the foreground until Ctrl-C or SIGTERM (the `harness llm serve` command).

    SIGTERM stops it as cleanly as Ctrl-C, so a server started in the background (where the shell makes
    it ignore Ctrl-C) stops with a plain `kill`.

    Args:
        host: address to bind; keep it a loopback address.
        port: port to bind; 0 picks a free one (printed).
        responder_name: a registered responder ('fade' answers FADE and explainer prompts, 'echo' echoes).
        latency_s: delay added to every answer, to mimic a remote backend.
    """
    server = LoopbackServer(RESPONDERS.get(responder_name)(), FaultPlan(latency_s=latency_s), host=host, port=port)
    print(
        f"Serving OpenAI-compatible chat completions at {server.url} (responder {responder_name!r}).\n"
        f"Use llm.model: openai/scripted and llm.api_base: {server.url}. Ctrl-C stops.",
        flush=True,
    )
    previous = signal.signal(signal.SIGTERM, _stop_serving)
    try:
        server.serve_forever()
    finally:
        signal.signal(signal.SIGTERM, previous)
