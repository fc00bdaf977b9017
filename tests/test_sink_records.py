"""Deduplication keys of the record format (ndintake.sinks.records)."""

from __future__ import annotations

from brokers import batches
from ndintake.sinks.records import event_key


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
