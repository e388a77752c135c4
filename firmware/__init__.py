"""The card side in three rooms: `apps` (the card applications and the phone wallet), `issuing` (the test world:
PKI, personalization, token provisioning) and `simulator` (the software PN532 and the rig); `cli` is `pos-card`."""
