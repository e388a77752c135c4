"""The software PN532 — frame codec, chip state machine, virtual RF field, link model, pseudo-terminal server."""
