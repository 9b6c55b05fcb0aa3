"""Fault injection for proving the guarantees: processes, disk, clock, power loss, invariants.

Used by the CI tests (tests/faults/) and by the long runs in `bench/chaos`. The cloud comes
from a `CloudFactory`, so a PostgreSQL deployment with several replicas plugs in unchanged.
"""
