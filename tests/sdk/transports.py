"""Fault injectors between the SDK and the real server (not stand-ins for it): they forward
every request to the server and record what left the process, or lose an answer on the way
back, as a flaky network does."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import httpx


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Log:
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    drop: set[str] = field(default_factory=set)  # paths whose first answer gets lost

    def record(self, request: httpx.Request) -> bool:
        """Record ``request``; True if its answer must be lost."""
        with self.lock:
            self.seen.append(
                Seen(request.method, request.url.path, dict(request.headers), request.content)
            )
            if request.url.path in self.drop:
                self.drop.discard(request.url.path)
                return True
        return False

    def to(self, path: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path == path]


class RecordingTransport(httpx.HTTPTransport):
    def __init__(self, log: Log) -> None:
        super().__init__()
        self.log = log

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        lose = self.log.record(request)
        response = super().handle_request(request)
        if lose:
            response.read()
            response.close()
            raise httpx.ReadError("answer lost on the way back", request=request)
        return response


class AsyncRecordingTransport(httpx.AsyncHTTPTransport):
    def __init__(self, log: Log) -> None:
        super().__init__()
        self.log = log

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        lose = self.log.record(request)
        response = await super().handle_async_request(request)
        if lose:
            await response.aread()
            await response.aclose()
            raise httpx.ReadError("answer lost on the way back", request=request)
        return response


def recording_client(kind: str, log: Log) -> httpx.Client | httpx.AsyncClient:
    if kind == "async":
        return httpx.AsyncClient(transport=AsyncRecordingTransport(log))
    return httpx.Client(transport=RecordingTransport(log))
