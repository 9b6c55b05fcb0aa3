"""The evaluator as replicas run it: one leads, the other stands by and takes over."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cloud.console.app import open_console_storage
from cloud.console.evaluator import AlertEvaluator, EvaluatorState
from console.console_helpers import FAST

SETTINGS = replace(FAST, evaluate_every_s=0.05, lease_ttl_s=30.0)


async def test_one_replica_leads_the_other_takes_over_when_it_stops(db_url: str) -> None:
    a_storage = await open_console_storage(db_url)
    b_storage = await open_console_storage(db_url)
    try:
        a = AlertEvaluator(a_storage, SETTINGS, holder="replica-a")
        b = AlertEvaluator(b_storage, SETTINGS, holder="replica-b")
        assert (await a.tick()).leading
        assert not (await b.tick()).leading
        assert (a.state, b.state) == (EvaluatorState.LEADING, EvaluatorState.STANDBY)
        task = asyncio.create_task(a.run())
        await asyncio.sleep(0.2)
        task.cancel()  # a clean stop hands the lease over at once, not after its 30 s TTL
        await asyncio.gather(task, return_exceptions=True)
        assert (await b.tick()).leading
        assert b.state is EvaluatorState.LEADING
        # A replica that crashed without releasing: the lease passes after its TTL.
        later = datetime.now(UTC) + timedelta(seconds=SETTINGS.lease_ttl_s + 1)
        assert (await a.tick(later)).leading
    finally:
        await a_storage.close()
        await b_storage.close()


async def test_storage_failures_back_off_and_are_reported(db_url: str) -> None:
    storage = await open_console_storage(db_url)
    await storage.close()  # every call now fails with StorageError
    evaluator = AlertEvaluator(storage, SETTINGS, holder="replica-a")
    task = asyncio.create_task(evaluator.run())
    try:
        async with asyncio.timeout(5):
            while evaluator.state is not EvaluatorState.FAILING:
                await asyncio.sleep(0.01)
        assert evaluator.counters["failures"] >= 1
        assert evaluator.last_error == "storage is closed"
        assert not task.done()  # it keeps trying
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
