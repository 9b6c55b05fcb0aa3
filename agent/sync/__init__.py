"""Outbox → cloud: one drain worker, heartbeats, and the HTTP client they share."""
