"""Barcode/QR scanners: sans-IO framer and decoder, plus transport drivers around them."""

from agent.devices.scanner.decode import decode_frame
from agent.devices.scanner.framer import Frame, ScanFramer
from agent.devices.scanner.serial_driver import SerialScanner

__all__ = ["Frame", "ScanFramer", "SerialScanner", "decode_frame"]
