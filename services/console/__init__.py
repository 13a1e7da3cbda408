"""The operations console: server-rendered pages over the ledger and the broker for the people who run erasure."""
