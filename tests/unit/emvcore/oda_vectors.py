"""Published EMV offline-data-authentication test vectors (data only).

Source: the test data of lumag/emv-tools (Dmitry Eremin-Solenikov), as carried in
RfidResearchGroup/proxmark3 client/src/emv/test/sda_test.c, dda_test.c and cda_test.c.
The CA keys are the Visa test CA (A000000003, index 01, 1024 bits) and the Mastercard test CA
(A000000004, index 05, 1408 bits) exactly as shipped with those vectors. Expected results:
SDA → DAC 3132; DDA (terminal dynamic data 00000000) → ICC dynamic number 7A33FB8C9546E1E7;
CDA (unpredictable number 12345779) → ICC dynamic number 4CC2FB1FAFB30915, CID 40,
AC 16AFBA13C52FB173.
"""


def _h(*rows: str) -> bytes:
    return bytes.fromhex("".join(rows))


# --- SDA: Visa test CA A000000003 / 01 -------------------------------------------------------

VISA_RID = _h("A000000003")
VISA_INDEX = 0x01
VISA_EXPONENT = _h("03")
VISA_CHECKSUM = _h("d34a6a776011c7e7ce3aec5f03ad2f8cfc5503cc")
VISA_MODULUS = _h(
    "c696034213d7d8546984579d1d0f0ea519cff8deffc429354cf3a871a6f7183f",
    "1228da5c7470c055387100cb935a712c4e2864df5d64ba93fe7e63e71f25b1e5",
    "f5298575ebe1c63aa617706917911dc2a75ac28b251c7ef40f2365912490b939",
    "bca2124a30a28f54402c34aeca331ab67e1e79b285dd5771b5d9ff79ea630b75",
)

SDA_ISSUER_CERT = _h(
    "3c5fead4dd7bca44f93e90c44f76ede54a3288ecdc78469fcb1225c03b2c04f2",
    "c2f412281a0822df14649230989fb1494070daf8c9534a7881960148616ace58",
    "1788120d3506ace4cee564fb27ee53341c22f0b45b31873d05de545efe33bcd2",
    "9b2185d035a806ad08c6976f3505a19999930ca8a03efa321c486061f7dcec9f",
)
SDA_ISSUER_REMAINDER = _h(
    "1ebca30f00ce5962a8c6e130544b82891b236c65de29317f364735dee63f6598",
    "975835d5",
)
SDA_ISSUER_EXPONENT = _h("03")
SDA_SSAD = _h(
    "99a558b62b674aa5e7d2a57e5ef6a6f2258e5da052d05b54e5c115ff1cecf94a",
    "a2df8f39a01d71c619eb819da52ef381e84979586aea7855ffbef40aa3a71cd3",
    "b04cfdf270aec8158a2797f24fd613b748134661135cd290e45b04a8e0ccc711",
    "ae042f159e73c89c2a7e65a4c2fd1d6106024aa27130b0ecec0238f91659de96",
)
# Static data to be authenticated, already including the AIP (5C00) at the end.
SDA_STATIC_DATA = _h(
    "5f2403081231",
    "5a084276550013234599",
    "5f340101",
    "9f0702ff00",
    "9f0d05d040aca800",
    "9f0e050010000000",
    "9f0f05d068bcf800",
    "5c00",
)
SDA_AIP = _h("5c00")
SDA_PAN = "4276550000000000"
SDA_DAC = _h("3132")

# --- DDA and CDA: Mastercard test CA A000000004 / 05 -----------------------------------------

MC_RID = _h("A000000004")
MC_INDEX = 0x05
MC_EXPONENT = _h("03")
MC_CHECKSUM = _h("ebfa0d5d06d8ce702da3eae890701d45e274c845")
MC_MODULUS = _h(
    "b8048abc30c90d976336543e3fd7091c8fe4800df820ed55e7e94813ed00555b",
    "573feca3d84af6131a651d66cff4284fb13b635edd0ee40176d8bf04b7fd1c7b",
    "acf9ac7327dfaa8aa72d10db3b8e70b2ddd811cb4196525ea386acc33c0d9d45",
    "75916469c4e4f53e8e1c912cc618cb22dde7c3568e90022e6bba770202e4522a",
    "2dd623d180e215bd1d1507fe3dc90ca310d27b3efccd8f83de3052cad1e48938",
    "c68d095aac91b5f37e28bb49ec7ed597",
)

DDA_ISSUER_CERT = _h(
    "1714284f763b8586ee6d319951f7e63fa25076e50dc9d3200ba998d3a052adba",
    "9ab69ac6ad6add3ce09f0278f4074ec4ee9b1d2268a3e953575e454e50cd860b",
    "f424c51c597712d2aa057089dd8673e51b1e1d7188034892077ac18a6ae23488",
    "bea9df3b1a83f2c0800cd7c5cdf2fde0496f7bc39fb4bf363299bfa637b2ec33",
    "c507e36821eec2075f0e420d38a1c9f3127261ba316c987674fadb20ea7feb75",
    "ee455d12146ea6f02e8b01ec2fa7a115",
)
DDA_ISSUER_REMAINDER = _h(
    "6e63b7bc70abdd09341b34c03286ba9bd83ba7936c5b7798fb22c5e53ff240a2",
    "6dbd6415",
)
DDA_ISSUER_EXPONENT = _h("03")
DDA_ICC_CERT = _h(
    "a42fbeb156b98dcb0554da062adca5309a91f04fa2c7bd7102a8d73f16a3cfad",
    "e8aadf4f3fe2a2125ccdd77c6b9f78b5b4371ce0805725b0f9c027af147d91e1",
    "ffdb201e9c170ce777053a172ad526dcafd33895e1a947305c5b167f2e7c6f99",
    "1581a652ee473154760c2ed774214e50dfecdd4cf294c974b89ebca25b5ab3c0",
    "beb50dfaf782afde1433d90ca2a89d651e75d67ebc7c3e36f5a165ee61326129",
    "39c1ecd399e46074b996d93a88e01e0a",
)
DDA_ICC_REMAINDER = b""
DDA_ICC_EXPONENT = _h("03")
DDA_SDAD = _h(
    "3d87f31056102d2512cfde30900627c1263a76d1daa821f50831e606c54544c2",
    "58131eaebe874dcb1a28cf82d3ff91118260bc91113711d3b289fa41be69c7a7",
    "b5c783e6f8f97fce13f08b13fa44183e3718cebf0c41473d2b0ff4de44b6a02d",
    "75adb6d4962393ffdf4e69026cdf38ff",
)
# Static data to be authenticated, already including the AIP (3900) at the end.
DDA_STATIC_DATA = _h(
    "5f2503140501",
    "5f2403150630",
    "5a085285881254345653",
    "5f340101",
    "8e0c00000000000000001e031f03",
    "9f0702ff00",
    "9f0d05bc50bc0000",
    "9f0e050000000000",
    "9f0f05bc70bc9800",
    "9f4a0182",
    "5f28020643",
    "8c219f02069f03069f1a0295055f2a029a039c019f37049f35019f45029f4c089f3403",
    "8d0c910a8a0295059f37049f4c08",
    "3900",
)
DDA_AIP = _h("3900")
DDA_PAN = "5285881254345653"
DDA_TERMINAL_DYNAMIC_DATA = _h("00000000")
DDA_ICC_DYNAMIC_NUMBER = _h("7A33FB8C9546E1E7")

# CDA reuses the DDA issuer/ICC certificates, static data and PAN.
CDA_SDAD = _h(
    "1c009fc48679157dbff45f65d33ff78d4fcbf0cf5ea4208d107ae95aa38c546d",
    "0e5a18b87403a12bd447a8bbfc1e49ce0b2e251389205703c9bb1a88cc79f1dd",
    "c2f9841eadf07ce07b62511ddc93df59f28f0e91f92332d29cdef2bccb100885",
    "0500ef3e470a4cb18cd91aa5c1a108f3",
)
CDA_UNPREDICTABLE_NUMBER = _h("12345779")
# CDOL1 data sent with GENERATE AC, and the card's response data elements (9F27 9F36 9F10).
CDA_CDOL1_DATA = _h(
    "000000000000",  # 9F02 amount
    "000000000000",  # 9F03 other amount
    "0643",  # 9F1A country
    "0000000000",  # 95 TVR
    "0643",  # 5F2A currency
    "140925",  # 9A date
    "50",  # 9C type
    "12345779",  # 9F37 unpredictable number
    "23",  # 9F35 terminal type
    "0000",  # 9F45 data authentication code
    "0000000000000000",  # 9F4C ICC dynamic number
    "1e0300",  # 9F34 CVM results
)
CDA_RESPONSE_TLVS = _h(
    "9f270140",
    "9f36020010",
    "9f10120010904001220000000000000000000000ff",
)
CDA_ICC_DYNAMIC_NUMBER = _h("4CC2FB1FAFB30915")
CDA_CID = _h("40")
CDA_AC = _h("16AFBA13C52FB173")
