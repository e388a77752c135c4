"""Feedback for the shopper and the merchant: GPIO lights and tones, the message line."""
