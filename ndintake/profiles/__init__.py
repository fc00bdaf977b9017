"""The intake protocols read by the core: APM Server's intake (v2 and RUM v3) and Datadog's product analytics items."""
