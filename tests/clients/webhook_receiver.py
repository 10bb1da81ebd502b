"""A webhook receiver for the tests: verifies every delivery with the Standard Webhooks
reference library and with Svix's, and answers as a script says.

Usage: webhook_receiver.py --secret whsec_... [--secret whsec_...]
Prints `PORT <n>` once listening on 127.0.0.1.

- POST /control {"script": [...], "secrets": [...]}: the answers to give to the next requests,
  in order (then 200): "ok", "status:<code>", "status:<code>:retry-after:<seconds>",
  "sleep:<ms>" (then 200: for timeouts), "redirect" (302 to another URL).
- GET /received: every delivery so far, in order, as
  {"id", "timestamp", "body", "verified", "svix_verified", "answer"}.
- Any other POST is a delivery.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks
from svix.webhooks import Webhook as SvixWebhook, WebhookVerificationError

lock = threading.Lock()
state = {"script": [], "secrets": [], "received": []}


def verify(secret, body, headers):
    std = svix = False
    try:
        standardwebhooks.Webhook(secret).verify(body, headers)
        std = True
    except Exception:
        pass
    try:
        SvixWebhook(secret).verify(body, headers)
        svix = True
    except WebhookVerificationError:
        pass
    return std, svix


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body=b"", headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/received":
            with lock:
                body = json.dumps(state["received"]).encode()
            self.reply(200, body, {"content-type": "application/json"})
        else:
            self.reply(404)

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        if self.path == "/control":
            control = json.loads(body)
            with lock:
                if "script" in control:
                    state["script"] = list(control["script"])
                if "secrets" in control:
                    state["secrets"] = list(control["secrets"])
            self.reply(204)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock:
            answer = state["script"].pop(0) if state["script"] else "ok"
            secrets = list(state["secrets"])
        results = [verify(s, body, headers) for s in secrets]
        std = bool(results) and all(r[0] for r in results)
        svix = bool(results) and all(r[1] for r in results)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body.decode("utf-8", "replace")
        with lock:
            state["received"].append(
                {
                    "id": headers.get("webhook-id"),
                    "timestamp": headers.get("webhook-timestamp"),
                    "signature": headers.get("webhook-signature"),
                    "custom": headers.get("x-team"),
                    "body": parsed,
                    "verified": std,
                    "svix_verified": svix,
                    "answer": answer,
                }
            )
        if not std or not svix:
            self.reply(401, b"signature did not verify")
            return
        if answer == "ok":
            self.reply(200, b"thanks")
        elif answer.startswith("sleep:"):
            time.sleep(int(answer.split(":")[1]) / 1000)
            self.reply(200, b"late")
        elif answer == "redirect":
            self.reply(302, b"", {"location": "http://127.0.0.1:9/elsewhere"})
        elif answer.startswith("status:"):
            parts = answer.split(":")
            extra = {}
            if len(parts) == 4 and parts[2] == "retry-after":
                extra["retry-after"] = parts[3]
            self.reply(int(parts[1]), b"scripted failure", extra)
        else:
            self.reply(500, b"unknown script step")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A sender that went away mid-request (the tests kill it): not our error.
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", action="append", default=[])
    args = parser.parse_args()
    state["secrets"] = args.secret
    server = Server(("127.0.0.1", 0), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
