"""A scripted stand-in for the Anthropic Messages API, for driving the real Claude Code CLI in tests.

Stdlib only, loopback only. It answers `POST /v1/messages` (streamed as server-sent events when the
request asks for `stream`, as one JSON message otherwise) by replaying a script: each request of the
main conversation (one that offers tools) takes the next *turn* of the script, a list of content
blocks (text and tool calls). Requests without tools (titles, summaries, classifiers the client
makes on the side) get a short text answer and do not consume the script. Every request body is
recorded, so a test can assert on what the client sent (system prompt, user message, tool results).

A turn may be a callable taking the list of requests seen so far and returning the blocks, so a
script can react to earlier tool results.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Block = dict[str, Any]
Turn = Sequence[Block] | Callable[[list[dict[str, Any]]], Sequence[Block]]
MODEL = "claude-scripted-test"


def text(value: str) -> Block:
    return {"type": "text", "text": value}


def tool(name: str, **tool_input: Any) -> Block:
    return {"type": "tool_use", "name": name, "input": tool_input}


class ScriptedAPI:
    """Run with `with ScriptedAPI(turns) as api:`; `api.base_url` goes into ANTHROPIC_BASE_URL."""

    def __init__(self, turns: Sequence[Turn], final_text: str = "Done.") -> None:
        self.turns = list(turns)
        self.final_text = final_text
        self.requests: list[dict[str, Any]] = []  # main-conversation requests, in order
        self.times: list[float] = []  # time.monotonic() at which each main request arrived
        self.side_requests: list[dict[str, Any]] = []
        self.other: list[tuple[str, str]] = []  # (method, path) of anything else asked
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def turns_left(self) -> int:
        return len(self.turns)

    def __enter__(self) -> ScriptedAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- answering -------------------------------------------------------------------------

    def answer(self, body: dict[str, Any]) -> tuple[list[Block], str]:
        """The content blocks and stop reason for one request."""
        with self._lock:
            if not body.get("tools"):
                self.side_requests.append(body)
                return [text("OK")], "end_turn"
            self.requests.append(body)
            self.times.append(time.monotonic())
            if self.turns:
                turn = self.turns.pop(0)
                blocks = list(turn(list(self.requests)) if callable(turn) else turn)
            else:
                blocks = [text(self.final_text)]
            blocks = [dict(b) for b in blocks]
            for block in blocks:
                if block["type"] == "tool_use":
                    block.setdefault("id", f"toolu_scripted_{next(self._ids):04d}")
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        return blocks, stop

    def _message(self, blocks: list[Block], stop: str) -> dict[str, Any]:
        return {
            "id": f"msg_scripted_{next(self._ids):04d}",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 20},
        }

    def _events(self, blocks: list[Block], stop: str) -> list[tuple[str, dict[str, Any]]]:
        start = self._message([], None)  # type: ignore[arg-type]
        start["usage"] = {"input_tokens": 100, "output_tokens": 1}
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
        for index, block in enumerate(blocks):
            if block["type"] == "tool_use":
                head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            else:
                head = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": head}))
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                         "usage": {"output_tokens": 20}}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send_json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                api.other.append(("GET", self.path))
                self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "scripted API"}})

            def do_HEAD(self) -> None:
                api.other.append(("HEAD", self.path))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                if path == "/v1/messages/count_tokens":
                    self._send_json(200, {"input_tokens": 1000})
                    return
                if path != "/v1/messages":
                    api.other.append(("POST", self.path))
                    self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "scripted API"}})
                    return
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._send_json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad JSON"}})
                    return
                blocks, stop = api.answer(body)
                if not body.get("stream"):
                    self._send_json(200, api._message(blocks, stop))
                    return
                chunks = [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in api._events(blocks, stop)]
                payload = b"".join(chunks)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
