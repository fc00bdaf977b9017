"""Deduplication keys of the record format (ndintake.sinks.records)."""

from __future__ import annotations

import orjson
import pytest

import ndintake
from brokers import batches
from ndintake.server import Batch
from ndintake.sinks.records import (
    BatchRecords, encode_batch, event_key, event_partition_key, event_record, partition_key,
)


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
        ("intake-v3/rum_errors.ndjson", "rum", "/intake/v3/rum/events"),  # taken unparsed, written expanded
    ],
)
def test_batch_records_are_the_event_records_as_json(name: str, profile: str, path: str) -> None:
    """BatchRecords splices the shared part in; the bytes are the record as JSON,
    exactly orjson's encoding unless the event's ``data`` is spliced from its
    line unparsed (then the same JSON, as the client spelled it)."""
    spliced = 0
    for batch in batches(name, profile=profile, path=path):
        encoded = BatchRecords(batch)
        for event in batch:
            # a RUM v3 event's record holds its expanded data: parsed to be written
            unparsed = event.raw_is_data and not event.data_parsed and not event.abbreviated
            record = encoded.record(event)
            assert event.data_parsed is not unparsed  # writing the record parsed nothing else
            assert orjson.loads(record) == event_record(event, batch)
            if unparsed:
                spliced += 1
                value = event.raw[event.raw.index(b":") + 1 : event.raw.rindex(b"}")].strip()
                assert record.count(value) == 1
            else:
                assert record == orjson.dumps(event_record(event, batch))
            assert encoded.key(event) == event_key(event, batch)
    assert spliced or profile == "rum"


def test_prodlytics_records_have_no_metadata() -> None:
    event = ndintake.Event("prodlytics", {"a": "é", "n": 2**63 - 1}, b'{"a": "\\u00e9"}', 0)
    batch = Batch([event], profile="prodlytics", metadata=None, path="/api/v2/prodlytics")
    assert BatchRecords(batch).record(event) == orjson.dumps(event_record(event, batch))
    assert b"metadata" not in BatchRecords(batch).record(event)


@pytest.mark.parametrize("name", ["intake-v2/events.ndjson", "intake-v2/transactions_spans.ndjson", "intake-v2/logs.ndjson"])
def test_unparsed_events_give_the_same_partition_key_and_batch_body(name: str) -> None:
    """The Kafka partition key and the batch body read an unparsed event without
    parsing it, and say what they say of the parsed event."""
    for batch in batches(name):
        unparsed = [event for event in batch if not event.data_parsed]
        assert unparsed
        keys = [event_partition_key(event, batch.metadata) for event in batch]
        body = encode_batch(batch)
        assert not any(event.data_parsed for event in unparsed)
        assert keys == [partition_key({"data": e.expanded(), "metadata": batch.metadata}) for e in batch]
        lines = [orjson.loads(line) for line in body.splitlines()]
        assert lines == [{"metadata": batch.metadata}] + [{e.kind: e.expanded()} for e in batch]


def test_spliced_data_of_repeated_escaped_and_spaced_keys() -> None:
    """A line whose type key is repeated, escaped or spaced out: the spliced
    ``data`` is the value the parse keeps (the last), as JSON."""
    body = b"\n".join([
        b'{"metadata": {"service": {"name": "s", "agent": {"name": "a", "version": "1"}}}}',
        b'{"log": {"message": "a"}, "log": {"message": "b"}}',
        b'{"l\\u006fg": {"message": "c"}}',
        b' { "log" :\t{"message": "d" }  } ',
        b"",
    ])
    stream = ndintake.IntakeStream()
    events = stream.feed(body) + stream.close().final_events
    batch = Batch(events, profile="apm", metadata=stream.metadata, path="/intake/v2/events")
    # msgspec's typed check takes all three unparsed; the byte scanner leaves a repeated
    # or escaped key to the slow path (parsed), which must splice the same records
    assert events[2].raw_is_data and not events[2].data_parsed
    records = [BatchRecords(batch).record(event) for event in events]
    assert [orjson.loads(r)["data"]["message"] for r in records] == ["b", "c", "d"]
    assert [orjson.loads(r) for r in records] == [event_record(e, batch) for e in events]
    assert orjson.loads(encode_batch(batch).split(b"\n")[1]) == {"log": {"message": "b"}}


@pytest.mark.parametrize("name", ["intake-v2/events.ndjson", "intake-v2/transactions_spans.ndjson"])
def test_without_msgspec_unparsed_events_are_parsed_to_be_written(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The byte scanner takes events without msgspec installed: the records are then
    written from the parsed data, the same JSON values as the spliced ones."""
    from ndintake.sinks import records

    for batch in batches(name):
        spliced = [orjson.loads(line) for line in encode_batch(batch).splitlines()]
        keys = [event_partition_key(event, batch.metadata) for event in batch]
        with monkeypatch.context() as patch:
            patch.setattr(records, "msgspec", None)
            parsed = [orjson.loads(line) for line in encode_batch(batch).splitlines()]
            assert [event_partition_key(event, batch.metadata) for event in batch] == keys
        assert parsed == spliced
