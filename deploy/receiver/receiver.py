"""Webhook receiver for the compose stack: logs every notification Wharf delivers.

POST /events   accepts a distribution-style envelope ({"events": [...]}), logs one line
               per event (action, repository, tag, digest, media type, event id) and the
               request's signature headers, and answers 200. With FAIL_RATE (0..1) set it
               answers 503 to that share of deliveries, to watch Wharf retry and back off.
GET  /healthz  200, for compose's health check.

Signature verification is not done here: it is logged whether the delivery carried
signature headers, and WEBHOOK_SECRET is available to this process to add a check once
the signing format is final. Standard library only.
"""

import json
import os
import random
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 16 * 1024 * 1024
FAIL_RATE = float(os.environ.get("FAIL_RATE", "0") or 0)
# Headers worth logging with each delivery (case-insensitive prefixes).
LOGGED_HEADER_PREFIXES = ("x-", "content-type", "user-agent")


def log(record):
    print(json.dumps(record, sort_keys=True), flush=True)


class Handler(BaseHTTPRequestHandler):
    server_version = "wharf-webhook-receiver/1"

    def _reply(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/healthz":
            self._reply(200, b"ok\n")
        else:
            self._reply(404, b"not found\n")

    def do_POST(self):
        if self.path.split("?", 1)[0] != "/events":
            self._reply(404, b"not found\n")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self._reply(400, b"bad Content-Length\n")
            return
        if length < 0 or length > MAX_BODY:
            self._reply(413, b"too large\n")
            return
        raw = self.rfile.read(length)
        headers = {
            k.lower(): v
            for k, v in self.headers.items()
            if k.lower().startswith(LOGGED_HEADER_PREFIXES)
        }
        headers["authorization_present"] = "authorization" in {k.lower() for k in self.headers}
        try:
            envelope = json.loads(raw or b"{}")
        except json.JSONDecodeError as e:
            log({"msg": "invalid JSON", "error": str(e), "headers": headers})
            self._reply(400, b"invalid JSON\n")
            return
        events = envelope.get("events", []) if isinstance(envelope, dict) else []
        signed = any("signature" in k for k in headers)
        for event in events:
            target = event.get("target", {}) if isinstance(event, dict) else {}
            log(
                {
                    "msg": "event",
                    "id": event.get("id"),
                    "action": event.get("action"),
                    "repository": target.get("repository"),
                    "tag": target.get("tag"),
                    "digest": target.get("digest"),
                    "mediaType": target.get("mediaType"),
                    "size": target.get("size"),
                    "request_id": (event.get("request") or {}).get("id"),
                    "signed": signed,
                }
            )
        log({"msg": "delivery", "events": len(events), "bytes": len(raw), "headers": headers})
        if FAIL_RATE > 0 and random.random() < FAIL_RATE:
            self._reply(503, b"failing on purpose (FAIL_RATE)\n")
            return
        self._reply(200, b"ok\n")

    def log_message(self, fmt, *args):
        # http.server's per-request line, to stderr; health checks are left out.
        if self.path == "/healthz":
            return
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    log({"msg": "listening", "port": port, "fail_rate": FAIL_RATE,
         "secret_configured": bool(os.environ.get("WEBHOOK_SECRET"))})
    server.serve_forever()


if __name__ == "__main__":
    main()
