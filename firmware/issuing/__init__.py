"""The issuing side: the test world (scheme and issuer PKI, banks, personalization of cards, token provisioning
and the token payload the token service delivers). Shared by the world builder and the acquirer stub, which
imports nothing else of `firmware` but its file helpers."""
