"""The sans-I/O core: the stream, decoders, line splitter, schemas, events, results,
errors and limits (bytes in, events and a result out, no I/O)."""
