#!/usr/bin/env python3
"""Reference pipeline for bench/run.sh: the LGWAN agent's import, written plainly in Python.

Reads a 特定健診 archive (zip of HL7 CDA XML), parses each document with lxml, normalizes the
identity (NFKC), makes the subject token (HMAC-SHA256), splits the observations into one FHIR
JSON record per catalog category (plus the attendance record), derives the record id, subject
binding and DEK (HMAC, HKDF), compresses and pads each record as payload schema 2 (`lz4`
block format), seals with AES-256-GCM (`cryptography`) binding the header as AAD, and writes the sealed records to files, 1000 per file, each fsync-ed (the agent commits
1000-record batches to its SQLite outbox). Formats follow docs/envelope.md. One pass, no 枝番
conflict survey (the agent makes two passes), so if anything this flatters Python.

usage: reference_pipeline.py ARCHIVE OUT_DIR CATALOG_TOML  -> one JSON line on stdout
"""

import base64
import hashlib
import hmac
import json
import os
import resource
import struct
import sys
import time
import tomllib
import unicodedata
import zipfile

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
import lz4.block
from lxml import etree

NS = {"h": "urn:hl7-org:v3"}
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
OID_INSURER, OID_SYMBOL, OID_NUMBER = "1.2.392.200119.6.101", "1.2.392.200119.6.204", "1.2.392.200119.6.205"
DASHES = set("-\u00ad\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\ufe58\ufe63\uff0d\u30fc\uff70")
SOURCE = "source:bench-city"
BATCH = 1000
SCHEMA = 2  # JSON, LZ4 block, zero padding (docs/envelope.md, "Payload")
MIN_BUCKET = 1024


def normalize(text):
    text = unicodedata.normalize("NFKC", text)
    return "".join(c for c in text if not c.isspace() and c not in DASHES).upper()


def b32(raw):
    return base64.b32encode(raw[:20]).decode().lower().rstrip("=")


def lp8(b):
    return bytes([len(b)]) + b


def lp16(b):
    return struct.pack(">H", len(b)) + b


def lp64(b):
    return struct.pack(">Q", len(b)) + b


class Keys:
    def __init__(self):
        self.token = os.urandom(32)
        record = os.urandom(32)
        self.prk = hmac.new(b"\0" * 32, record, hashlib.sha256).digest()  # HKDF extract, no salt
        self.rid = self.expand(b"renkei record-id v1")
        self.binding = self.expand(b"renkei subject-binding v1")

    def expand(self, info):
        return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(self.prk)


def quantity(raw):
    if "." not in raw:
        try:
            return int(raw)
        except ValueError:
            pass
    try:
        return float(raw)
    except ValueError:
        return raw


def fhir_value(v):
    kind = v.get(XSI_TYPE, "")
    if kind == "PQ":
        q = {"value": quantity(v.get("value", ""))}
        if v.get("unit"):
            q.update(unit=v.get("unit"), system="http://unitsofmeasure.org", code=v.get("unit"))
        return "valueQuantity", q
    if kind in ("CD", "CO"):
        system = v.get("codeSystem", "")
        c = {"system": system if ":" in system else "urn:oid:" + system, "code": v.get("code")}
        if v.get("displayName"):
            c["display"] = v.get("displayName")
        return "valueCodeableConcept", {"coding": [c]}
    return "valueString", (v.text or "")


def pack(json_bytes):
    block = lz4.block.compress(json_bytes, mode="default", store_size=False)
    packed = struct.pack(">II", len(json_bytes), len(block)) + block
    bucket = 1 << (max(len(packed), MIN_BUCKET) - 1).bit_length()
    return packed + b"\0" * (bucket - len(packed))


def process(xml, keys, items, attendance, out):
    doc = etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    doc_id_el = doc.find("h:id", NS)
    doc_id = doc_id_el.get("root") + "^" + doc_id_el.get("extension")
    ids = {e.get("root"): e.get("extension") for e in doc.findall("h:recordTarget/h:patientRole/h:id", NS)}
    patient = doc.find("h:recordTarget/h:patientRole/h:patient", NS)
    birth = patient.find("h:birthTime", NS).get("value")
    sex = patient.find("h:administrativeGenderCode", NS).get("code")
    exam = doc.find("h:documentationOf/h:serviceEvent/h:effectiveTime", NS).get("value")
    exam_date = f"{exam[:4]}-{exam[4:6]}-{exam[6:8]}"
    insurer = normalize(ids.get(OID_INSURER, "")).zfill(8).encode()
    canonical = (b"rid1" + lp8(insurer) + lp8(normalize(ids.get(OID_SYMBOL, "")).encode())
                 + lp8(normalize(ids[OID_NUMBER]).encode()) + lp8(birth.encode()) + lp8(sex.encode()))
    token = "st1_" + b32(hmac.new(keys.token, canonical, hashlib.sha256).digest())

    by_category = {}
    for obs in doc.iterfind(".//h:observation", NS):
        code_el = obs.find("h:code", NS)
        value = obs.find("h:value", NS)
        if code_el is None or value is None:
            continue
        item = items.get(code_el.get("code"))
        if item is None or not item.get("export", True):
            continue
        key, fhir = fhir_value(value)
        resource_ = {
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "urn:oid:1.2.392.200119.6.1005",
                                 "code": code_el.get("code"), "display": item.get("name")}]},
            "effectiveDateTime": exam_date, key: fhir,
        }
        by_category.setdefault(item["category"], []).append({"resource": resource_})
    year = int(exam[:4]) if int(exam[4:6]) >= 4 else int(exam[:4]) - 1
    by_category[attendance] = [{"resource": {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "urn:renkei:catalog", "code": attendance}]}, "valueInteger": year}}]

    for category, entries in sorted(by_category.items()):
        payload = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries},
                             ensure_ascii=False, separators=(",", ":")).encode()
        rid = "rec1_" + b32(hmac.new(keys.rid, lp64(doc_id.encode()) + lp64(category.encode()),
                                     hashlib.sha256).digest())
        binding = "sb1_" + b32(hmac.new(keys.binding, lp64(rid.encode()) + lp64(token.encode()),
                                        hashlib.sha256).digest())
        date = exam_date if category != attendance else f"{year}-04-01"
        aad = (lp16(b"renkei envelope v1") + lp16(rid.encode()) + lp16(binding.encode())
               + lp16(category.encode()) + lp16(SOURCE.encode()) + lp16(date.encode())
               + lp16(struct.pack(">H", SCHEMA)) + lp16(struct.pack(">I", 1)))
        dek = keys.expand(b"renkei dek v1" + rid.encode())
        nonce = os.urandom(12)
        sealed = AESGCM(dek).encrypt(nonce, pack(payload), aad)
        record = (b"RKSR\x01" + struct.pack(">I", len(aad)) + aad + nonce
                  + struct.pack(">I", len(sealed)) + sealed)
        out.append((rid, token, category, record))


def flush(out_dir, n, batch):
    path = os.path.join(out_dir, f"batch-{n:06d}.bin")
    with open(path, "wb") as f:
        for rid, token, category, record in batch:
            head = f"{rid} {token} {category}\n".encode()
            f.write(struct.pack(">II", len(head), len(record)) + head + record)
        f.flush()
        os.fsync(f.fileno())


def main():
    archive, out_dir, catalog_path = sys.argv[1:4]
    os.makedirs(out_dir, exist_ok=True)
    with open(catalog_path, "rb") as f:
        catalog = tomllib.load(f)
    items, attendance = catalog["items"], catalog["attendance_category"]
    keys = Keys()
    started = time.perf_counter()
    documents = records = files = 0
    batch = []
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            if "/DATA/" not in name or not name.endswith(".xml"):
                continue
            process(z.read(name), keys, items, attendance, batch)
            documents += 1
            if len(batch) >= BATCH:
                flush(out_dir, files, batch)
                records += len(batch)
                files += 1
                batch = []
    if batch:
        flush(out_dir, files, batch)
        records += len(batch)
    secs = time.perf_counter() - started
    print(json.dumps({
        "python_persons": documents, "python_records": records, "python_seconds": secs,
        "python_persons_per_s": documents / secs,
        "python_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
