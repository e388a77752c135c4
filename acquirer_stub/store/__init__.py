"""Storage: SQLite (WAL, synchronous=FULL) behind a small layer; one transaction per decision."""
