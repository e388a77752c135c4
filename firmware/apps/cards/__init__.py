"""The card applications in a card file: qPBOC debit and credit, the transit purse, and their file format."""
