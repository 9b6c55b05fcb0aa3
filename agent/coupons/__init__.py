"""Coupons in the store: offline verification, the single-use ledger, reservation, POS API."""
