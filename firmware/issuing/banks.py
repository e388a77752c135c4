"""The issuers of the test world: 20 credit-card banks and 12 debit-card banks, and six transit cities.

Names are real Chinese banks (the seed names the first five); BINs, keys and accounts are invented
test data in the UnionPay 62 range and say nothing about the real banks.
"""

from __future__ import annotations

from dataclasses import dataclass

from emvcore.crypto.cryptogram import Algorithm


@dataclass(frozen=True)
class Bank:
    code: str  # issuer host id, e.g. "icbc-credit"
    name: str
    kind: str  # "credit" or "debit"
    bin: str  # six digits; every card of this issuer starts with it
    algorithm: Algorithm = Algorithm.TDES  # cryptogram scheme shared by card and issuer host


_CREDIT = [
    ("boc", "Bank of China"),
    ("icbc", "Industrial and Commercial Bank of China"),
    ("ccb", "China Construction Bank"),
    ("bocom", "Bank of Communications"),
    ("cmb", "China Merchants Bank"),
    ("abc", "Agricultural Bank of China"),
    ("citic", "China CITIC Bank"),
    ("ceb", "China Everbright Bank"),
    ("hxb", "Hua Xia Bank"),
    ("cmbc", "China Minsheng Bank"),
    ("pab", "Ping An Bank"),
    ("cib", "Industrial Bank"),
    ("spdb", "Shanghai Pudong Development Bank"),
    ("cgb", "China Guangfa Bank"),
    ("bob", "Bank of Beijing"),
    ("bosc", "Bank of Shanghai"),
    ("nbcb", "Bank of Ningbo"),
    ("czb", "China Zheshang Bank"),
    ("cbhb", "China Bohai Bank"),
    ("jsb", "Bank of Jiangsu"),
]
_DEBIT = [
    ("boc", "Bank of China"),
    ("icbc", "Industrial and Commercial Bank of China"),
    ("ccb", "China Construction Bank"),
    ("bocom", "Bank of Communications"),
    ("cmb", "China Merchants Bank"),
    ("psbc", "Postal Savings Bank of China"),
    ("abc", "Agricultural Bank of China"),
    ("egb", "Evergrowing Bank"),
    ("hzb", "Bank of Hangzhou"),
    ("njcb", "Bank of Nanjing"),
    ("hsb", "Huishang Bank"),
    ("cqcb", "Bank of Chongqing"),
]
# The SM4 scheme is exercised by one issuer of each kind (doc §9: its cryptogram layout is unconfirmed).
_SM4_ISSUERS = {"jsb-credit", "cqcb-debit"}

BANKS: tuple[Bank, ...] = tuple(
    Bank(
        code=f"{short}-{kind}",
        name=name,
        kind=kind,
        bin=f"{prefix}{number:02d}",
        algorithm=Algorithm.SM4 if f"{short}-{kind}" in _SM4_ISSUERS else Algorithm.TDES,
    )
    for kind, prefix, banks in (("credit", "6250", _CREDIT), ("debit", "6210", _DEBIT))
    for number, (short, name) in enumerate(banks, start=1)
)


@dataclass(frozen=True)
class TransitCity:
    code: str  # file name
    name: str
    city_code: str  # four digits in the card number and public file


TRANSIT_CITIES: tuple[TransitCity, ...] = (
    TransitCity("beijing", "Beijing", "1000"),
    TransitCity("shanghai", "Shanghai", "2900"),
    TransitCity("guangzhou", "Guangzhou", "5810"),
    TransitCity("shenzhen", "Shenzhen", "5840"),
    TransitCity("chengdu", "Chengdu", "6510"),
    TransitCity("hangzhou", "Hangzhou", "3100"),
)
