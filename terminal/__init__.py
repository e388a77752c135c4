"""The QuickPass point-of-sale terminal (reader, contactless kernel, host link, journal)."""
