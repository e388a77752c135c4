"""The README's main command: the whole stack (acquirer stub, software PN532, terminal service) and the seed's
story played on it, as the shopper and the merchant see it (`python -m posdemo [--once]`)."""
