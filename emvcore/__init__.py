"""Shared EMV/qPBOC protocol core: pure functions (bytes in, bytes out) used by card, terminal and host."""
