"""Cardholder self-service pages: my phones and their cards, "I lost this phone", the SMS inbox."""
