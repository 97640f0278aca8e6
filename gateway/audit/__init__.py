"""The tamper-evident audit log: one writer per log, a keyed hash chain, checkpoints.

`format` (entries and canonical JSON), `keys`, `writer` and `tickets` (group commit, rotation,
recovery), `verify`, `reader`, `socket` (producers in other processes); the
format itself is specified in docs/audit.md.
"""
