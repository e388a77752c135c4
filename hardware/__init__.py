"""Hardware edges shared by the terminal and the card-emulation rig: the pn532pi adapter (and GPIO)."""
