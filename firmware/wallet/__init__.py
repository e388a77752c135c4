"""firmware/wallet"""
