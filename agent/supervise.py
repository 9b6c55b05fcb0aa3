"""Keep a long-running coroutine alive: restart it with backoff if it ever fails."""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from agent.liveness import Pulse

log = logging.getLogger(__name__)

RESTART_INITIAL_S = 1.0
RESTART_MAX_S = 60.0
# A loop that ran this long before failing is considered healthy again: reset the backoff.
HEALTHY_AFTER_S = 60.0


async def supervise(
    name: str, factory: Callable[[], Awaitable[None]], pulse: Pulse | None = None
) -> None:
    """Run `factory()` until cancelled; an exception is logged and the loop restarted.

    `pulse`, the loop's own, is told about the restart pause so it is not taken for a wedge.
    """
    delay = RESTART_INITIAL_S
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            await factory()
            log.warning("%s returned; restarting", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting in %.1fs", name, delay)
        if loop.time() - started > HEALTHY_AFTER_S:
            delay = RESTART_INITIAL_S
        if pulse is not None:
            pulse.beat(delay)
        await asyncio.sleep(random.uniform(delay / 2, delay))
        delay = min(RESTART_MAX_S, delay * 2)
