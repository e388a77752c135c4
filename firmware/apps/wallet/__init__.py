"""The phone wallet: up to eight tokenized cards and transit cards behind a fingerprint, and its binding client."""
