"""Issuer hosts: the authorization rules of 32 banks, ARQC checks, ATC tracking, funds, promotions."""
