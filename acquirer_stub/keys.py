"""Issuer, token-service and transit keys, read from the test world at start-up and held only in memory."""

from __future__ import annotations

from dataclasses import dataclass

from firmware.issuing.layout import World


@dataclass(frozen=True)
class KeyStore:
    imk_ac: dict[str, bytes]  # issuer code → IMK for application cryptograms
    algorithms: dict[str, str]  # issuer code → the algorithm as the issuer file names it (`Algorithm.named`)
    token_imk: bytes
    token_bin: str
    terminal_keys: dict[str, bytes]  # TID → HMAC key for request signing
    transit_load_keys: dict[str, bytes]  # transit city code → load master key (the host loads as the issuer's agent)
    transit_tac_keys: dict[str, bytes]  # transit city code → TAC master key (to check a load's TAC)

    @classmethod
    def from_world(cls, world: World) -> KeyStore:
        issuers = world.issuers()
        tsp = world.tsp()
        return cls(
            imk_ac={i["code"]: bytes.fromhex(world.issuer_keys(i["code"])["imk_ac"]) for i in issuers},
            algorithms={i["code"]: i["algorithm"] for i in issuers},
            token_imk=bytes.fromhex(tsp["token_imk"]),
            token_bin=tsp["token_bin"],
            terminal_keys={t["tid"]: bytes.fromhex(t["key"]) for t in world.terminals()},
            transit_load_keys={c["city_code"]: bytes.fromhex(c["load_master_key"]) for c in world.transit_keys()},
            transit_tac_keys={c["city_code"]: bytes.fromhex(c["tac_master_key"]) for c in world.transit_keys()},
        )
