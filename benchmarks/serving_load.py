"""A lean HTTP/1.1 load generator: N keep-alive connections, each POSTing a body in a loop.

Run as its own process (`python -m benchmarks.serving_load URL BODY_FILE`) so the server under
test does not share an interpreter with it; prints one JSON line of results. With `--lines`
each line of BODY_FILE is one body and every connection cycles through them from its own
starting line (distinct customers, for the cache benchmark). It speaks raw
asyncio protocols rather than an HTTP client library, which keeps its own cost per request
small (checked against wrk: see benchmarks/README.md, "Serving").
"""

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Tally:
    sent: int = 0  # every completed request, warm-up included
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    recording: bool = False


class Connection(asyncio.Protocol):
    """One keep-alive connection; `roundtrip()` sends the request and waits for the response."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:head_end]).lower()
        start = head.find(b"content-length:")
        length = int(head[start + 15 : head.find(b"\r\n", start)]) if start >= 0 else 0
        if len(self.buffer) >= head_end + 4 + length:
            status = int(self.buffer[9:12])
            del self.buffer[: head_end + 4 + length]
            if not self.waiter.done():
                self.waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    async def roundtrip(self, request: bytes) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(request)
        return await self.waiter


async def client_loop(
    host: str, port: int, requests: list[bytes], first: int, tally: Tally, stop: float
) -> None:
    loop = asyncio.get_running_loop()
    conn: Connection | None = None
    turn = first
    while time.perf_counter() < stop:
        try:
            if conn is None:
                _, conn = await loop.create_connection(Connection, host, port)
            started = time.perf_counter()
            status = await asyncio.wait_for(conn.roundtrip(requests[turn % len(requests)]), 30)
            tally.sent += 1
            turn += 1
        except (OSError, TimeoutError, ConnectionError):
            conn = None
            if tally.recording:
                tally.errors += 1
            await asyncio.sleep(0.01)
            continue
        if tally.recording:
            tally.latencies.append(time.perf_counter() - started)
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if status != 200:
                tally.errors += 1
    if conn is not None and conn.transport is not None:
        conn.transport.close()


async def run(
    url: str, bodies: list[bytes], concurrency: int, warmup: float, duration: float
) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [
        (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]
    tally = Tally()
    begin = time.perf_counter()
    stop = begin + warmup + duration
    # Connection i starts at line i * len / concurrency, so the connections spread over the
    # bodies instead of sending the same one at once.
    clients = [
        asyncio.create_task(
            client_loop(host, port, requests, i * len(requests) // concurrency, tally, stop)
        )
        for i in range(concurrency)
    ]
    await asyncio.sleep(warmup)
    tally.recording = True
    measured_from = time.perf_counter()
    await asyncio.gather(*clients)
    elapsed = time.perf_counter() - measured_from
    return summarize(tally, elapsed)


def summarize(tally: Tally, elapsed: float) -> dict:
    lat = sorted(tally.latencies)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    ok = sum(n for status, n in tally.statuses.items() if status == 200)
    return {
        "sent": tally.sent,
        "requests": len(lat),
        "req_per_s": ok / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": tally.errors,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("body_file")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--lines", action="store_true", help="each line of BODY_FILE is a body")
    args = parser.parse_args(argv)
    with open(args.body_file, "rb") as f:
        bodies = [line for line in f.read().splitlines() if line] if args.lines else [f.read()]
    result = asyncio.run(run(args.url, bodies, args.concurrency, args.warmup, args.duration))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
