"""APM Server's intake: the envelope reader (v2 and RUM v3 lines) and RUM v3's abbreviations."""
