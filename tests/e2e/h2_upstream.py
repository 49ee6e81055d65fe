#!/usr/bin/env python3
"""An HTTP/2 upstream replica on hypercorn (an ASGI server built on the
Python `h2` library, which resets a stream or connection whose request
carries a header value HTTP forbids, such as one with leading or trailing
whitespace). It answers every request with a JSON report of what arrived:
the replica's name, every `x-context-id` value (as bytes, latin-1), and the
SHA-256 and length of the body.

    h2_upstream.py NAME PORT

Cleartext HTTP/2 with prior knowledge (h2c), as Envoy speaks to an upstream
whose cluster sets `http2_protocol_options`. Prints "ready" once listening.
"""

import asyncio
import hashlib
import json
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config


def app_for(name):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        report = {
            "replica": name,
            "http_version": scope["http_version"],
            "path": scope["path"],
            "context_ids": [v.decode("latin-1") for k, v in scope["headers"]
                            if k == b"x-context-id"],
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_length": len(body),
        }
        payload = json.dumps(report).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    return app


async def main(name, port):
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    # Longer than Envoy's upstream idle timeout, so Envoy closes first.
    config.keep_alive_timeout = 300
    config.accesslog = None
    config.errorlog = "-"
    task = asyncio.ensure_future(serve(app_for(name), config))
    # serve() binds before its first await returns control.
    await asyncio.sleep(0.3)
    print("ready", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
