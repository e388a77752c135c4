"""The simulator: the software PN532 (frame codec, chip state machine, its UART, I2C and SPI host interfaces and
the device nodes for the last two), the virtual RF field, the link model, the rig and its control socket, and
card emulation on a second PN532."""
