"""Storage: SQLite (WAL, synchronous=FULL) behind a small layer; one transaction per decision (`db.transaction`).

The only home of SQL (issue 13): one repository module per table family, functions taking a connection and
handing out frozen dataclasses or plain values, never a driver's row. The web side, the token service, the ECR
hand-over, the loader, the terminal API and the issuer engine all read and write through these modules.
"""
