"""The back end in one Flask app: acquirer, issuer hosts, token service, settlement, dashboard."""
