"""State: what was observed on the host, labels, hashes and (later) the SQLite store."""
