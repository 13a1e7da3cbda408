"""The consumer runtime's stages: decode → claim (inbox) → handle → stage (outbox) → settle, and their hooks."""
