"""Datadog's product analytics intake: its response body (items are read by ``profiles/items.py``)."""
