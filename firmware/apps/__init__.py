"""The card applications: what runs on a card or a phone (qPBOC debit and credit, the transit purse, the wallet
with its secure element and fingerprint), and loading a card or phone file to present. Imports nothing from the
other two rooms."""
