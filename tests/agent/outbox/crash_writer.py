"""Crash-test helper: appends events forever, printing each seq once it is durable."""

import asyncio
import sys
from pathlib import Path

from agent.outbox import Identity, Outbox
from protocol import DeviceStatusPayload, ScanPayload


async def main(path: Path) -> None:
    outbox = await Outbox.open(path, Identity("agent-crash", "store-crash"))
    scan = ScanPayload(raw_b64="NDAwNjM4MTMzMzkzMQ==", text="4006381333931")
    status = DeviceStatusPayload(state="online", condition="connected")
    n = 0
    while True:
        # Mix single appends and concurrent bursts so both commit paths are exercised.
        burst = 1 + n % 7
        payloads = [status if (n + i) % 11 == 0 else scan for i in range(burst)]
        results = await asyncio.gather(*(outbox.append("dev-1", p) for p in payloads))
        sys.stdout.write("".join(f"{r.seq}\n" for r in results))
        sys.stdout.flush()
        n += burst


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
