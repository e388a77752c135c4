"""firmware/cards"""
