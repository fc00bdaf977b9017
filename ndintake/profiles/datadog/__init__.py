"""Datadog's product analytics intake: the item reader and facets."""
