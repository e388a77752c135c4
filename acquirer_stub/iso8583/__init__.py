"""ISO 8583 for CUP-style POS terminals: the field spec (`spec`), the translation to and from the JSON API's
messages (`mapping`) and `POST /api/v1/iso8583` (`endpoint`), which decides through the same service functions
as the JSON endpoints so that both wire formats share one idempotency key and one stored answer."""
