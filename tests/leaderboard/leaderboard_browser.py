"""A headless Chromium driven over the DevTools protocol through a pipe (stdlib only, no websocket client).

`--remote-debugging-pipe` makes Chromium read protocol messages from fd 3 and write them to fd 4, each a
JSON text ended by a NUL byte. Clicks are real mouse events at the element's position.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """HARNESS_CHROMIUM if set, else the first Chromium/Chrome on PATH."""
    configured = os.environ.get("HARNESS_CHROMIUM")
    if configured:
        return shutil.which(configured) or (configured if Path(configured).is_file() else None)
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class BrowserError(AssertionError):
    pass


class Chromium:
    """One browser process; `new_page()` opens a tab."""

    def __init__(self, binary: str, profile_dir: Path) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        # bash (dash takes single-digit fds only) puts our pipe ends on fds 3 and 4, where Chromium expects
        # them, then becomes Chromium. The write end is the newer fd, so it is never 3 and is not clobbered.
        self.process = subprocess.Popen(
            [
                "bash",
                "-c",
                f'exec "$0" "$@" 3<&{to_browser_read} 4>&{from_browser_write}',
                binary,
                *FLAGS,
                f"--user-data-dir={profile_dir}",
                "about:blank",
            ],
            pass_fds=(to_browser_read, from_browser_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(remaining, 0))
            if not ready:
                raise BrowserError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed the pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 20
    ) -> dict[str, Any]:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        os.write(self._to_browser, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise BrowserError(f"{method} failed: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def pump(self, seconds: float) -> None:
        """Collect events for a while (e.g. errors that come after load)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except BrowserError:
            pass

    def wait_event(self, method: str, session: str, after: int, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        index = after
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            self.events.append(self._read_message(deadline))

    def new_page(self) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        return Page(self, target, session)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.call("Browser.close", timeout=5)
            except (BrowserError, OSError):
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass


class Page:
    """One tab: navigate, evaluate, click, screenshot, and the errors it logged."""

    def __init__(self, browser: Chromium, target: str, session: str) -> None:
        self.browser, self.target, self.session = browser, target, session

    def _call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, session=self.session)

    def goto(self, url: str) -> None:
        """Navigate and wait until the page has loaded (or, for a new #fragment of this page, moved to it)."""
        mark = len(self.browser.events)
        same_document = self.evaluate("location.href.split('#')[0]") == url.split("#")[0] and "#" in url
        self._call("Page.navigate", {"url": url})
        self.browser.wait_event(
            "Page.navigatedWithinDocument" if same_document else "Page.loadEventFired", self.session, mark
        )

    def wait_for(self, expression: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise BrowserError(f"{expression!r} never became true")
            time.sleep(0.05)

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        result = self._call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": await_promise}
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str, *, navigates: bool = False) -> None:
        """A real left click on the first element matching `selector` (scrolled into view), at the centre of
        its first line box: the centre of a link wrapped over two lines can fall between them."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getClientRects()[0];"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
        )
        if box is None:
            raise BrowserError(f"no element matches {selector!r}")
        mark = len(self.browser.events)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self._call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1},
            )
        if navigates:
            self.browser.wait_event("Page.loadEventFired", self.session, mark)

    def type_text(self, selector: str, text: str) -> None:
        self.click(selector)
        self._call("Input.insertText", {"text": text})

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions, CSP violations and failed loads this tab has reported."""
        self.browser.pump(0.2)
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            params = event.get("params", {})
            if event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"{params['entry']['source']}: {params['entry']['text']}")
            elif event["method"] == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('exception', {}).get('description')}")
            elif event["method"] == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(f"console.{params['type']}: {[arg.get('value') for arg in params['args']]}")
        return found

    def emulate(self, width: int, height: int, *, mobile: bool = False) -> None:
        """Size the viewport like a laptop or phone screen (before loading, so the page's script sees it)."""
        self._call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile},
        )

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        self.browser.pump(0.3)
        metrics = self._call("Page.getLayoutMetrics")
        viewport, content = metrics["cssLayoutViewport"], metrics["cssContentSize"]
        clip = {
            "x": 0,
            "y": 0,
            "width": viewport["clientWidth"],
            "height": content["height"] if full_page else viewport["clientHeight"],
            "scale": 1,
        }
        data = self._call(
            "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": full_page}
        )["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})
