"""What terminal and acquirer agree on over HTTP: request signing and the JSON message shapes.

Pure code (no Flask, no I/O), so that the terminal and the host import the same rules instead of two
copies that drift apart.
"""
