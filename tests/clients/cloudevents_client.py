"""The CloudEvents Python SDK as a client of Sluice.

Usage:
  cloudevents_client.py send URL KEY   -- sends, with the SDK's own HTTP encoders, one event in
      binary mode, one in structured mode, a batch of two, and one with binary data; prints
      what each answered, as JSON lines.
  cloudevents_client.py parse          -- reads {"headers": {...}, "body": "..."} lines from
      stdin (HTTP requests Sluice delivered) and prints each as the SDK parses it.
"""

import json
import sys
import urllib.request

from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http


def post(url, key, headers, body):
    req = urllib.request.Request(url, data=body if isinstance(body, bytes) else body.encode(), method="POST")
    for k, v in headers.items():
        req.add_header(k, v)
    req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def send(url, key):
    attrs = {"type": "com.example.order.created", "source": "https://shop.example.com/orders",
             "id": "ce-binary-1", "subject": "order/1", "traceparent": "00-4bf92f3577b34da6-00f067aa0ba902b7-01"}
    headers, body = to_binary(CloudEvent(attrs, {"order": 1, "total": 12.5}))
    # The data is JSON (urllib would otherwise say application/x-www-form-urlencoded).
    headers.setdefault("content-type", "application/json")
    print(json.dumps({"mode": "binary", "answer": post(url, key, headers, body)}))

    attrs = {"type": "com.example.order.paid", "source": "https://shop.example.com/orders", "id": "ce-structured-1"}
    headers, body = to_structured(CloudEvent(attrs, {"order": 1}))
    print(json.dumps({"mode": "structured", "answer": post(url, key, headers, body)}))

    batch = []
    for i in range(2):
        _, body = to_structured(CloudEvent(
            {"type": "com.example.order.shipped", "source": "https://shop.example.com/orders", "id": f"ce-batch-{i}"},
            {"order": i}))
        batch.append(json.loads(body))
    status = post(url, key, {"Content-Type": "application/cloudevents-batch+json"}, json.dumps(batch))
    print(json.dumps({"mode": "batch", "answer": status}))

    attrs = {"type": "com.example.blob", "source": "urn:blob", "id": "ce-bytes-1", "datacontenttype": "application/octet-stream"}
    headers, body = to_structured(CloudEvent(attrs, b"\x00\x01binary"))
    print(json.dumps({"mode": "structured-binary-data", "answer": post(url, key, headers, body)}))


def parse():
    for line in sys.stdin:
        req = json.loads(line)
        event = from_http(req["headers"], req["body"])
        data = event.data
        if isinstance(data, bytes):
            data = {"base64": __import__("base64").b64encode(data).decode()}
        print(json.dumps({"attributes": dict(event.get_attributes()), "data": data}, default=str))


if __name__ == "__main__":
    {"send": lambda: send(sys.argv[2], sys.argv[3]), "parse": parse}[sys.argv[1]]()
