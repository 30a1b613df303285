"""A loopback HTTP/1.1 proxy in front of a real OPA that misbehaves on decision requests.

Everything except `POST /v1/data/...` passes through untouched (so engines can load bundles
through it); decision requests get the configured fault. Only what the OPA engine sends is
understood: requests with Content-Length bodies, keep-alive connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import httpx


@dataclass
class Fault:
    """What to do with decision requests. `kind` is one of:

    pass: forward; delay: sleep `seconds` then forward; status: answer `status` with `body`
    without asking OPA; truncate: forward, cut OPA's real body to `keep` bytes with a matching
    Content-Length; cut: forward, announce the full length but send `keep` bytes and close.
    """

    kind: str = "pass"
    seconds: float = 0.0
    status: int = 500
    body: bytes = b'{"code":"internal_error","message":"injected by test proxy"}'
    keep: int = 20


@dataclass
class FaultProxy:
    upstream: str
    fault: Fault = field(default_factory=Fault)
    decision_requests: int = 0
    _server: asyncio.Server | None = None
    _client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> FaultProxy:
        self._client = httpx.AsyncClient(base_url=self.upstream, timeout=30)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
        if self._client is not None:
            await self._client.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._answer(method, path, headers, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Write one response; False closes the connection."""
        fault = self.fault if method == "POST" and path.startswith("/v1/data/") else Fault()
        if fault is not self.fault or fault.kind == "pass":
            status, payload = await self._forward(method, path, headers, body)
            return await self._write(writer, status, payload)
        self.decision_requests += 1
        if fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            status, payload = await self._forward(method, path, headers, body)
            return await self._write(writer, status, payload)
        if fault.kind == "status":
            return await self._write(writer, fault.status, fault.body)
        status, payload = await self._forward(method, path, headers, body)
        if fault.kind == "truncate":
            return await self._write(writer, status, payload[: fault.keep])
        if fault.kind == "cut":
            await self._write(writer, status, payload, length=len(payload), send=fault.keep)
            return False
        raise AssertionError(f"unknown fault {fault.kind}")

    async def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        assert self._client is not None
        keep = {k: v for k, v in headers.items() if k in ("content-type", "accept")}
        response = await self._client.request(method, path, content=body, headers=keep)
        return response.status_code, response.content

    @staticmethod
    async def _write(
        writer: asyncio.StreamWriter,
        status: int,
        payload: bytes,
        *,
        length: int | None = None,
        send: int | None = None,
    ) -> bool:
        head = (
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload) if length is None else length}\r\n\r\n"
        )
        writer.write(head.encode() + payload[:send])
        await writer.drain()
        return True
