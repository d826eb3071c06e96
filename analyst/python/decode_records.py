#!/usr/bin/env python3
"""Decode Podium record values with fastavro, from the .avsc files and the Avro specification
alone: no Podium code, no record headers, no schema registry.

Each record value is Avro single-object encoded: C3 01, the little-endian CRC-64-AVRO
fingerprint of the writer schema's Parsing Canonical Form, then the Avro binary body. The
fingerprint picks the schema, computed here by fastavro from each .avsc file.

Usage: decode_records.py SCHEMA_DIR [RECORDS]
  SCHEMA_DIR  a directory of .avsc files (schemas/avro)
  RECORDS     a file with one record value per line, hex encoded (default: standard input)

Prints one JSON object per record: {"event_type": ..., "event": {...}}, timestamps as
milliseconds since the epoch. Exits 1 on a record whose fingerprint matches no schema.
"""

import datetime
import io
import json
import pathlib
import sys

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def schemas_by_fingerprint(directory: pathlib.Path) -> dict[bytes, tuple[str, dict]]:
    found = {}
    for path in sorted(directory.glob("*.avsc")):
        schema = parse_schema(json.loads(path.read_text()))
        canonical = to_parsing_canonical_form(schema)
        # fastavro gives the fingerprint's bytes in the order records carry them.
        key = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        found[key] = (path.stem, schema)
    return found


def plain(value):
    """JSON-ready: datetimes (timestamp-millis) become milliseconds since the epoch."""
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def main() -> int:
    if len(sys.argv) not in (2, 3) or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    known = schemas_by_fingerprint(pathlib.Path(sys.argv[1]))
    source = open(sys.argv[2]) if len(sys.argv) == 3 else sys.stdin
    for number, line in enumerate(source, start=1):
        value = bytes.fromhex(line.strip())
        if value[:2] != b"\xc3\x01":
            print(f"record {number}: not Avro single-object encoded", file=sys.stderr)
            return 1
        match = known.get(value[2:10])
        if match is None:
            print(f"record {number}: no schema has fingerprint {value[2:10].hex()}", file=sys.stderr)
            return 1
        event_type, schema = match
        event = schemaless_reader(io.BytesIO(value[10:]), schema)
        print(json.dumps({"event_type": event_type, "event": plain(event)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
