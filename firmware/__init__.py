"""The card side: QuickPass card applications, the phone wallet, the test PKI and the software PN532."""
