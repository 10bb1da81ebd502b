"""Confluent's own Python client against a running Sluice: the schema registry under
/registry, and serialized records produced into topics and read back.

Usage: python confluent_registry.py URL TOKEN   (TOKEN: an admin key, sk_<id>_<secret>)
Exits non-zero, saying why, when anything differs from what Confluent's registry does.
"""

import base64
import json
import sys
import urllib.error
import urllib.request

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

URL, TOKEN = sys.argv[1], sys.argv[2]
KEY_ID, SECRET = TOKEN[3:19], TOKEN[20:]


def http(method, path, body=None, content_type="application/json"):
    req = urllib.request.Request(URL + path, method=method, data=body)
    req.add_header("Authorization", "Bearer " + TOKEN)
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def check(cond, what):
    if not cond:
        print("FAILED:", what, file=sys.stderr)
        sys.exit(1)


def create_topic(name):
    status, body = http(
        "POST",
        "/v1/topics",
        json.dumps({"name": name, "partitions": 1, "replicationFactor": 1, "config": {}}).encode(),
    )
    check(status == 201, f"create topic {name}: {status} {body}")


def produce_framed(topic, data):
    status, body = http("POST", f"/v1/topics/{topic}/events", data, "application/octet-stream")
    check(status == 200, f"produce to {topic}: {status} {body}")
    return body["results"][0]


def fetch_values(topic):
    status, body = http("GET", f"/v1/topics/{topic}/partitions/0/events?offset=0")
    check(status == 200, f"fetch {topic}: {status} {body}")
    return [base64.b64decode(e["value"]) for e in body["events"]]


# The client authenticates the way Confluent Cloud users do: HTTP Basic key:secret.
client = SchemaRegistryClient({"url": URL + "/registry", "basic.auth.user.info": f"{KEY_ID}:{SECRET}"})

PAYMENT_V1 = json.dumps({
    "type": "record", "name": "Payment", "namespace": "acme",
    "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double"}],
})
PAYMENT_V2 = json.dumps({
    "type": "record", "name": "Payment", "namespace": "acme",
    "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double"},
               {"name": "currency", "type": "string", "default": "EUR"}],
})
PAYMENT_BAD = json.dumps({
    "type": "record", "name": "Payment", "namespace": "acme",
    "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double"},
               {"name": "currency", "type": "string", "default": "EUR"},
               {"name": "region", "type": "string"}],
})

create_topic("payments")
subject = "payments-value"

# Register, and the same schema again: the same id.
id1 = client.register_schema(subject, Schema(PAYMENT_V1, "AVRO"))
check(id1 == client.register_schema(subject, Schema(PAYMENT_V1, "AVRO")), "re-registering gives the same id")

# Evolve compatibly (a field with a default) under the default BACKWARD level.
check(client.test_compatibility(subject, Schema(PAYMENT_V2, "AVRO")) is True, "v2 is backward compatible")
id2 = client.register_schema(subject, Schema(PAYMENT_V2, "AVRO"))
check(id2 != id1, "a new schema gets a new id")
latest = client.get_latest_version(subject)
check(latest.version == 2 and latest.schema_id == id2, f"latest is v2: {latest}")
check(client.get_versions(subject) == [1, 2], "versions 1 and 2")
check(subject in client.get_subjects(), "the subject is listed")

# An incompatible change is refused with 409.
check(client.test_compatibility(subject, Schema(PAYMENT_BAD, "AVRO")) is False, "bad is incompatible")
try:
    client.register_schema(subject, Schema(PAYMENT_BAD, "AVRO"))
    check(False, "registering an incompatible schema must fail")
except SchemaRegistryError as e:
    check(e.http_status_code == 409 and e.error_code == 409, f"409 for incompatible: {e}")

# A missing subject is Confluent's 40401.
try:
    client.get_latest_version("nothing-here-value")
    check(False, "a missing subject must fail")
except SchemaRegistryError as e:
    check(e.http_status_code == 404 and e.error_code == 40401, f"40401: {e}")

# Serialize with the Avro serializer (it registers and frames: magic 0, 4-byte id, body).
ctx = SerializationContext("payments", MessageField.VALUE)
serializer = AvroSerializer(client, PAYMENT_V2)
payment = {"id": "p-1", "amount": 12.5, "currency": "USD"}
framed = serializer(payment, ctx)
check(framed[0] == 0 and int.from_bytes(framed[1:5], "big") == id2, "wire format with v2's id")
placed = produce_framed("payments", framed)
check("offset" in placed, f"the framed record was appended: {placed}")

# A frame whose body is not what its schema says is rejected by the gateway, not appended.
status, body = http("POST", "/v1/topics/payments/events", framed[:5] + b"\x01", "application/octet-stream")
result = body["results"][0] if isinstance(body, dict) and "results" in body else body
check(result.get("error_code") == 42210, f"a broken frame is rejected: {status} {body}")

# Read it back and deserialize with Confluent's deserializer.
values = fetch_values("payments")
check(len(values) == 1, f"only the valid record is in the topic: {len(values)}")
back = AvroDeserializer(client)(values[0], ctx)
check(back == payment, f"round trip: {back}")

# JSON Schema: the JSON serializer, the same round trip.
INVOICE = json.dumps({
    "$schema": "http://json-schema.org/draft-07/schema#", "title": "Invoice", "type": "object",
    "properties": {"number": {"type": "string"}, "total": {"type": "number", "minimum": 0}},
    "required": ["number", "total"],
})
create_topic("invoices")
jctx = SerializationContext("invoices", MessageField.VALUE)
jframed = JSONSerializer(INVOICE, client)({"number": "INV-7", "total": 99.5}, jctx)
produce_framed("invoices", jframed)
jback = JSONDeserializer(INVOICE, schema_registry_client=client)(fetch_values("invoices")[0], jctx)
check(jback == {"number": "INV-7", "total": 99.5}, f"JSON round trip: {jback}")
json_id = int.from_bytes(jframed[1:5], "big")
check(client.get_schema(json_id).schema_type == "JSON", "the JSON schema is typed JSON")

# Configuration through the client.
client.set_compatibility(subject_name=subject, level="FULL")
check(client.get_compatibility(subject_name=subject) == "FULL", "subject level is FULL")

print("confluent-kafka client: ok")
