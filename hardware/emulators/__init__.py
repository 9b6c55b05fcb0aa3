"""Emulated devices that speak over real ptys, TCP and mDNS, so drivers are tested end to end."""

from hardware.emulators.scanner import EmulatorError, PtyScanner, realistic_scans

__all__ = ["EmulatorError", "PtyScanner", "realistic_scans"]
