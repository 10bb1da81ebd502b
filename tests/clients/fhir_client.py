"""The fhir.resources package (R5 and R4B models) as a client of Sluice's FHIR API.

Usage: fhir_client.py BASE KEY   (BASE = http://host/fhir/{tenant})

Builds the resources it posts with the package's models, and parses every answer with them
(strictly: a malformed resource, Bundle, OperationOutcome or CapabilityStatement fails the
parse, and the script). Prints one JSON line per step: {"step", "status", "parsed": resource
type, ...}.
"""

import json
import sys
import urllib.error
import urllib.request

from fhir.resources.bundle import Bundle
from fhir.resources.capabilitystatement import CapabilityStatement
from fhir.resources.observation import Observation
from fhir.resources.operationoutcome import OperationOutcome
from fhir.resources.patient import Patient
from fhir.resources.R4B.encounter import Encounter as EncounterR4B

BASE, KEY = sys.argv[1], sys.argv[2]


def call(method, path, resource=None, content_type="application/fhir+json", key=KEY):
    data = resource.model_dump_json(exclude_none=True).encode() if resource is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req) as r:
            body = r.read()
            return r.status, r.headers, json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def out(step, status, parsed, **extra):
    print(json.dumps({"step": step, "status": status, "parsed": parsed, **extra}), flush=True)


# The CapabilityStatement, with no key.
status, _, body = call("GET", "/metadata", key=None)
cap = CapabilityStatement.model_validate(body)
out("metadata", status, cap.get_resource_type(), fhirVersion=cap.fhirVersion)

# A Patient built with the R5 model: created, read back, updated.
patient = Patient.model_validate(
    {"resourceType": "Patient", "active": True, "gender": "female", "birthDate": "1970-01-02",
     "name": [{"family": "Chalmers", "given": ["Peter", "James"]}]}
)
status, headers, body = call("POST", "/Patient", patient)
created = Patient.model_validate(body)
out("create", status, created.get_resource_type(), id=created.id, version=created.meta.versionId,
    etag=headers.get("ETag"))
status, _, body = call("GET", f"/Patient/{created.id}")
read = Patient.model_validate(body)
out("read", status, read.get_resource_type(), family=read.name[0].family)
read.gender = "other"
status, _, body = call("PUT", f"/Patient/{created.id}", read)
updated = Patient.model_validate(body)
out("update", status, updated.get_resource_type(), version=updated.meta.versionId)

# An invalid Observation (no code): the OperationOutcome parses.
obs = Observation.model_construct(resourceType="Observation", status="final")
status, _, body = call("POST", "/Observation", obs)
outcome = OperationOutcome.model_validate(body)
out("invalid", status, outcome.get_resource_type(),
    expressions=[e for i in outcome.issue for e in (i.expression or [])])

# A transaction Bundle built with the model; its transaction-response parses.
tx = Bundle.model_validate({
    "resourceType": "Bundle", "type": "transaction",
    "entry": [
        {"resource": patient.model_dump(exclude_none=True), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "id": "hr-1", "status": "final",
                      "code": {"text": "heart rate"},
                      "valueQuantity": {"value": 72, "unit": "beats/min"}},
         "request": {"method": "PUT", "url": "Observation/hr-1"}},
    ],
})
status, _, body = call("POST", "", tx)
response = Bundle.model_validate(body)
out("transaction", status, response.get_resource_type(), type=response.type,
    statuses=[e.response.status for e in response.entry])

# R4B: an Encounter built with the R4B model, posted as FHIR 4.3.
enc = EncounterR4B.model_validate(
    {"resourceType": "Encounter", "status": "finished",
     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}}
)
status, _, body = call("POST", "/Encounter", enc, "application/fhir+json; fhirVersion=4.3")
back = EncounterR4B.model_validate(body)
out("r4b", status, back.get_resource_type(), version=back.meta.versionId)
