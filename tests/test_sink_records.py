"""Deduplication keys of the record format (ndintake.sinks.records)."""

from __future__ import annotations

import orjson
import pytest

import ndintake
from brokers import batches
from ndintake.server import Batch
from ndintake.sinks.records import BatchRecords, event_key, event_record


def test_event_keys_are_distinct_and_stable_across_rum_v3_expansion():
    # one RUM v3 `x` line yields a transaction, 8 spans and 2 metricsets: span 0 and
    # metricset 0 share the line and their index, and must still get distinct keys
    def keys() -> list[str]:
        sent = batches("intake-v3/rum_events.ndjson", profile="rum", path="/intake/v3/rum/events")
        return [event_key(e, b) for b in sent for e in b]

    first = keys()
    assert len(first) == 11 and len(set(first)) == 11
    assert keys() == first  # the same body again: the same keys
    v2 = batches()
    assert len({event_key(e, b) for b in v2 for e in b}) == sum(map(len, v2))


@pytest.mark.parametrize(
    ("name", "profile", "path"),
    [
        ("intake-v2/events.ndjson", "apm", "/intake/v2/events"),
        ("intake-v3/rum_events.ndjson", "rum", "/intake/v3/rum/events"),
        ("intake-v2/errors.ndjson", "apm", "/intake/v2/events"),
    ],
)
def test_batch_records_are_the_event_records_as_json(name: str, profile: str, path: str) -> None:
    """BatchRecords splices the shared part in; the bytes must be exactly orjson's
    encoding of the record (and of every kind of event)."""
    for batch in batches(name, profile=profile, path=path):
        encoded = BatchRecords(batch)
        for event in batch:
            assert encoded.record(event) == orjson.dumps(event_record(event, batch))
            assert encoded.key(event) == event_key(event, batch)


def test_prodlytics_records_have_no_metadata() -> None:
    event = ndintake.Event("prodlytics", {"a": "é", "n": 2**63 - 1}, b'{"a": "\\u00e9"}', 0)
    batch = Batch([event], profile="prodlytics", metadata=None, path="/api/v2/prodlytics")
    assert BatchRecords(batch).record(event) == orjson.dumps(event_record(event, batch))
    assert b"metadata" not in BatchRecords(batch).record(event)
