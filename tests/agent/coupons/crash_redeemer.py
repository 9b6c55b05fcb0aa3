"""Crash-test helper: redeems coupons offline forever, some twice, printing each outcome."""

import asyncio
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import CouponSection
from agent.coupons.business import BusinessConfigStore
from agent.coupons.flow import CouponFlow
from agent.outbox import Identity, Outbox
from bench.coupons import STORE, _local_config
from protocol.coupons import CouponClaims, encode_token

SEED = bytes(range(32))


async def main(state: Path) -> None:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    outbox = await Outbox.open(state / "outbox.db", Identity("agent-crash", STORE))
    config = BusinessConfigStore(state)
    config.replace(_local_config(key), None)
    flow = CouponFlow(outbox, STORE, config, CouponSection(reserve_online=False))
    now = int(time.time())
    coupon_id = 1
    while True:
        # The same coupon from two devices at once, then the next: both paths get killed.
        token = encode_token(CouponClaims(1, 1, coupon_id, 100, "CNY", now - 60, now + 3600), key)
        outcomes = await asyncio.gather(
            flow.present(token, "d1", "pos"), flow.present(token, "d2", "pos")
        )
        for outcome in outcomes:
            sys.stdout.write(f"{coupon_id} {outcome.status} {outcome.redemption_id}\n")
        sys.stdout.flush()
        coupon_id += 1


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
