"""A webhook receiver for the tests: verifies every delivery with the Standard Webhooks
reference library and with Svix's (a `whpk_` public key instead: the asymmetric `v1a`
signatures, with `cryptography`), and answers as a script says.

Usage: webhook_receiver.py --secret whsec_... [--secret whsec_...]
Prints `PORT <n>` once listening on 127.0.0.1.

- POST /control {"script": [...], "secrets": [...], "verify": bool}: the answers to give to the
  next requests (with "verify": false, unsigned requests are answered too: FHIR rest-hooks),
  in order (then 200): "ok", "status:<code>", "status:<code>:retry-after:<seconds>",
  "sleep:<ms>" (then 200: for timeouts), "redirect" (302 to another URL).
- GET /received: every delivery so far, in order, as
  {"id", "timestamp", "body", "verified", "svix_verified", "answer"}.
- Any other POST is a delivery.
"""

import argparse
import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from svix.webhooks import Webhook as SvixWebhook, WebhookVerificationError

lock = threading.Lock()
state = {"script": [], "secrets": [], "received": [], "verify": True}


def verify_v1a(public_key, body, headers):
    """Standard Webhooks' asymmetric signatures (`v1a,`), which neither library checks:
    ed25519 over `id.timestamp.body` with the `whpk_` public key, via `cryptography`."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[len("whpk_"):]))
    if abs(time.time() - int(headers.get("webhook-timestamp", "0"))) > 300:
        return False
    content = (
        headers.get("webhook-id", "") + "." + headers.get("webhook-timestamp", "") + "."
    ).encode() + body
    for sig in headers.get("webhook-signature", "").split(" "):
        version, _, value = sig.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(value), content)
            return True
        except InvalidSignature:
            pass
    return False


def verify(secret, body, headers):
    if secret.startswith("whpk_"):
        ok = verify_v1a(secret, body, headers)
        return ok, ok
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
                if "verify" in control:
                    state["verify"] = bool(control["verify"])
            self.reply(204)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock:
            answer = state["script"].pop(0) if state["script"] else "ok"
            secrets = list(state["secrets"])
            must_verify = state["verify"]
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
        if must_verify and (not std or not svix):
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
