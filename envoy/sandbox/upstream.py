#!/usr/bin/env python3
"""An upstream replica that reports what it received.

Every request is answered with a JSON object: the replica's name, the request
method and path, the SHA-256 and length of the body as it arrived, every value
of `x-context-id` (in order), and the other request headers and trailers. The
sandbox (docker-compose.yaml) runs one per container; the end-to-end tests run
several in one process. Standard library only, HTTP/1.1 with keep-alive and
chunked uploads. A request with an `x-echo-body` header also gets the body
back as text. A request that accepts `text/event-stream` is answered with a
short SSE stream of the same report, so streaming through Envoy can be checked.

    upstream.py --replica replica-1=127.0.0.1:8081 --replica replica-2=127.0.0.1:8082
    REPLICA=replica-1 LISTEN=0.0.0.0:8080 upstream.py
"""

import argparse
import asyncio
import hashlib
import json
import os
import sys

# Longer than Envoy's upstream idle_timeout (60 s in the shipped configs), so
# Envoy always closes an idle connection first and never reuses one this
# server has just closed.
KEEP_ALIVE_SECS = 300
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
SSE_EVENTS = 3
SSE_GAP_SECS = 0.02
REASONS = {200: "OK", 400: "Bad Request", 413: "Payload Too Large"}


class BadRequest(Exception):
    pass


async def read_head(reader):
    """Request line and header lines, or None on a clean close."""
    try:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), KEEP_ALIVE_SECS)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("header section too large") from exc
    lines = raw[:-4].decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError as exc:
        raise BadRequest("bad request line") from exc
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest("bad header line")
        headers.append((name.strip().lower(), value.strip()))
    return method, target, version, headers


async def read_chunked(reader):
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            break
        if len(body) + size > MAX_BODY_BYTES:
            raise BadRequest("body too large")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest("chunk not followed by CRLF")
    trailers = []
    while True:
        line = (await reader.readuntil(b"\r\n"))[:-2]
        if not line:
            break
        name, _, value = line.decode("latin-1").partition(":")
        trailers.append([name.strip().lower(), value.strip()])
    return bytes(body), trailers


def report(replica, method, target, headers, body, trailers, chunked):
    return {
        "replica": replica,
        "method": method,
        "path": target,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_length": len(body),
        "context_ids": [v for n, v in headers if n == "x-context-id"],
        "headers": [[n, v] for n, v in headers if n != "x-context-id"],
        "trailers": trailers,
        "chunked": chunked,
    }


def with_body(doc, headers, body):
    # Only on request: most callers need the digest alone, and the body can
    # be large.
    if any(n == "x-echo-body" for n, _ in headers):
        doc["body"] = body.decode("utf-8", "replace")
    return doc


async def respond_sse(writer, doc):
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    for seq in range(SSE_EVENTS):
        event = f"id: {seq}\ndata: {json.dumps(dict(doc, event=seq))}\n\n".encode()
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        await asyncio.sleep(SSE_GAP_SECS)
    writer.write(b"0\r\n\r\n")


def respond(writer, status, doc, close):
    payload = json.dumps(doc).encode()
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n"
        + ("connection: close\r\n" if close else "")
        + "\r\n"
    )
    writer.write(head.encode() + payload)


async def serve_connection(replica, reader, writer):
    try:
        while True:
            try:
                head = await read_head(reader)
                if head is None:
                    return
                method, target, version, headers = head
                names = {n: v for n, v in headers}
                if names.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                trailers = []
                chunked = "chunked" in names.get("transfer-encoding", "").lower()
                if chunked:
                    body, trailers = await read_chunked(reader)
                else:
                    length = int(names.get("content-length", "0"))
                    if length > MAX_BODY_BYTES:
                        raise BadRequest("body too large")
                    body = await reader.readexactly(length)
            except (BadRequest, ValueError, asyncio.LimitOverrunError) as exc:
                respond(writer, 400, {"replica": replica, "error": str(exc)}, close=True)
                await writer.drain()
                return
            doc = report(replica, method, target, headers, body, trailers, chunked)
            doc = with_body(doc, headers, body)
            close = version != "HTTP/1.1" or names.get("connection", "").lower() == "close"
            if "text/event-stream" in names.get("accept", ""):
                await respond_sse(writer, doc)
            else:
                respond(writer, 200, doc, close)
            await writer.drain()
            if close:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


def parse_replica(spec):
    name, sep, address = spec.partition("=")
    host, colon, port = address.rpartition(":")
    if not (sep and colon and name):
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {spec!r}")
    return name, host.strip("[]"), int(port)


async def main(replicas):
    servers = []
    for name, host, port in replicas:
        server = await asyncio.start_server(
            lambda r, w, name=name: serve_connection(name, r, w),
            host,
            port,
            limit=MAX_HEADER_BYTES,
            reuse_address=True,
        )
        servers.append(server)
        print(f"listening {name} {host}:{port}", flush=True)
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replica", action="append", type=parse_replica, default=[],
                        help="NAME=HOST:PORT, repeatable")
    args = parser.parse_args()
    replicas = args.replica
    if not replicas and os.environ.get("REPLICA"):
        replicas = [parse_replica(f"{os.environ['REPLICA']}={os.environ.get('LISTEN', '0.0.0.0:8080')}")]
    if not replicas:
        parser.error("give --replica NAME=HOST:PORT, or REPLICA and LISTEN in the environment")
    try:
        asyncio.run(main(replicas))
    except KeyboardInterrupt:
        sys.exit(0)
