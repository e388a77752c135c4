"""Payment cryptography: DES/3DES/SM4 MACs, key derivation, cryptograms, EMV certificates, transit MACs."""
