"""firmware/world"""
