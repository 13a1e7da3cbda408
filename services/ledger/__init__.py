"""The erasure ledger: tracks every erasure request until all five slices have reported, with a receipt."""
