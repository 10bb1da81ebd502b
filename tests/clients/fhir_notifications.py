"""Parse notifications Sluice delivered with the fhir.resources package, strictly.

Usage: fhir_notifications.py < lines   (each line: {"version": "R5"|"R4B", "body": <JSON text>})

Each body is parsed as a Bundle of that version (R5's `subscription-notification`, R4B's
backport `history`), and its first entry as the version's SubscriptionStatus. Prints one JSON
line per input: {"ok": true, "type", "status_type", "events_since_start", "event_numbers",
"focus"} or {"ok": false, "error"}: a malformed notification fails its parse.
"""

import json
import sys

from fhir.resources.bundle import Bundle
from fhir.resources.R4B.bundle import Bundle as BundleR4B


def parse(version, text):
    model = BundleR4B if version == "R4B" else Bundle
    bundle = model.model_validate_json(text)
    status = bundle.entry[0].resource
    if status.get_resource_type() != "SubscriptionStatus":
        raise ValueError(f"first entry is a {status.get_resource_type()}")
    events = status.notificationEvent or []
    return {
        "ok": True,
        "type": bundle.type,
        "status_type": status.type,
        "status": status.status,
        "events_since_start": str(status.eventsSinceSubscriptionStart),
        "event_numbers": [str(e.eventNumber) for e in events],
        "focus": [e.focus.reference for e in events if e.focus is not None],
        "entries": len(bundle.entry),
    }


for line in sys.stdin:
    if not line.strip():
        continue
    item = json.loads(line)
    try:
        out = parse(item["version"], item["body"])
    except Exception as e:  # noqa: BLE001 - any failure is a malformed notification
        out = {"ok": False, "error": str(e)[:2000]}
    print(json.dumps(out), flush=True)
