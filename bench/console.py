"""bench/console: the fleet page at 100,000 stores, server-side, on SQLite (issue 6).

Seeds a cloud database with N stores (each with an agent, a heartbeat with devices, one event),
runs the evaluator's roll-up, then times the real console over loopback HTTP for the page
variants a head-office user clicks, beside the fleet list without the roll-up (the admin API's
`GET /api/stores`, which aggregates the agents table per request) in the same run.
"""

import argparse
import asyncio
import random
import re
import sqlite3
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from bench.common import percentiles, report
from cloud.app import create_app
from cloud.config import CloudConfig
from cloud.console.keys import CONSOLE_STORAGE, EVALUATOR, PASSWORDS
from cloud.console.settings import ConsoleSettings
from cloud.storage._sqlite_sql import to_us
from cloud.storage.console import FleetQuery, FleetThresholds
from cloud.storage.sqlite import SqliteStorage
from protocol.ids import uuid7_str

GOAL_MS = 300.0
ADMIN_TOKEN = "bench"
PASSWORD = "bench console password"
# Page variants: what a user clicks on the fleet page.
VARIANTS = [
    ("page 1, by store", "/console/"),
    ("last page", "/console/?page=LAST"),
    ("sort by backlog", "/console/?sort=backlog"),
    ("sort by last seen", "/console/?sort=seen"),
    ("filter offline", "/console/?status=offline"),
    ("faults + backlog, by oldest", "/console/?faults=1&backlog=1&sort=oldest"),
    ("search substring", "/console/?q=7777"),
    ("stores with alerts", "/console/?alerts=1&sort=alerts"),
    ("live fragment", "/console/?fragment=live&sort=events_today"),
]


def seed(path: Path, stores: int, rng: random.Random) -> None:
    """Stores, agents with heartbeats and one event each, written straight into SQLite."""
    now = datetime.now(UTC)
    now_us = to_us(now)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # seeding only: the bench measures reads
    conn.execute("BEGIN")
    store_rows, agent_rows, event_rows = [], [], []
    for i in range(stores):
        store_id = f"store-{i:06d}"
        store_rows.append((store_id, now_us - 86_400_000_000, 1))
        if i % 50 == 49:
            continue  # 2 %: created, never enrolled
        roll = rng.random()
        silent_s = (
            rng.uniform(0, 60)
            if roll < 0.85
            else rng.uniform(90, 300)
            if roll < 0.92
            else rng.uniform(600, 86_400)
        )
        backlog = rng.randint(1, 5000) if rng.random() < 0.1 else 0
        devices = [
            {"device_id": "scanner-front", "kind": "scanner", "state": "online",
             "condition": "connected"},
            {"device_id": "printer-till", "kind": "printer",
             "state": "degraded" if rng.random() < 0.03 else "online",
             "condition": "paper_out" if rng.random() < 0.03 else "connected"},
        ]  # fmt: skip
        heartbeat = {"version": "0.1.0", "backlog_events": backlog, "dead_letters": 0,
                     "clock_offset_s": rng.uniform(-1, 1), "devices": devices}  # fmt: skip
        hb_at = now_us - int(silent_s * 1e6)
        age = rng.uniform(10, 3000) if backlog else None
        agent_rows.append((f"agt-{i:06d}", store_id, f"tok-{i}", "{}", now_us - 86_400_000_000,
                           orjson.dumps(heartbeat).decode(), hb_at, backlog, age))  # fmt: skip
        payload = {
            "text": "4006381333931",
            "classification": "product" if rng.random() < 0.9 else "unrecognised",
        }
        body = orjson.dumps({"kind": "scan", "payload": payload}).decode()
        event_rows.append((uuid7_str(), f"agt-{i:06d}", store_id, 1, "scanner-front", "scan",
                           hb_at, hb_at, body))  # fmt: skip
    conn.executemany(
        "INSERT INTO stores (store_id, created_at, events_total) VALUES (?, ?, ?)", store_rows
    )
    conn.executemany(
        "INSERT INTO agents (agent_id, store_id, token_hash, agent_info, enrolled_at, heartbeat,"
        " heartbeat_at, backlog_events, oldest_unsynced_age_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        agent_rows,
    )
    conn.executemany(
        "INSERT INTO events (event_id, agent_id, store_id, seq, device_id, kind, occurred_at,"
        " received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        event_rows,
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


async def run(stores: int, rounds: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-console-"))
    db = tmp / "cloud.db"
    storage = await SqliteStorage.open(str(db))  # creates the schema
    await storage.close()
    started = time.perf_counter()
    seed(db, stores, random.Random(6))
    seed_s = time.perf_counter() - started
    settings = replace(ConsoleSettings(), evaluate_every_s=3600, lease_ttl_s=7200)
    config = CloudConfig(
        db_url=f"sqlite:///{db}", admin_token=ADMIN_TOKEN, port=0, console=settings
    )
    app = create_app(config)
    server_times: list[float] = []
    app.middlewares.append(_timer(server_times))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    rows: list[dict[str, Any]] = []
    try:
        evaluator = app[EVALUATOR]
        # The background task's first tick may already be running: wait for the roll-up to fill.
        started = time.perf_counter()
        first = await evaluator.tick()
        while (await app[CONSOLE_STORAGE].fleet_page(_query(settings))).totals.stores < stores:
            await asyncio.sleep(0.1)
            first = await evaluator.tick()
        rollup_s = time.perf_counter() - started
        started = time.perf_counter()
        steady = await evaluator.tick()
        tick_s = time.perf_counter() - started
        hashed = await app[PASSWORDS].async_hash(PASSWORD)
        await app[CONSOLE_STORAGE].add_user("bench", hashed, "admin", datetime.now(UTC))
        jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[url])
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            await _login(http, url)
            last_page = -(-stores // settings.page_size)
            for what, path in VARIANTS:
                server_times.clear()
                samples = await _time(
                    http, url + path.replace("LAST", str(last_page)), rounds, server_times
                )
                rows.append(_row(f"console: {what}", server_times, samples))
            server_times.clear()
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            samples = await _time(
                http, url + "/api/stores", max(3, rounds // 10), server_times, auth
            )
            rows.append(_row("baseline: GET /api/stores (no roll-up)", server_times, samples))
            baseline = rows[-1]
        storage_samples = []
        console = app[CONSOLE_STORAGE]
        for _ in range(rounds):
            t0 = time.perf_counter()
            await console.fleet_page(_query(settings))
            storage_samples.append(time.perf_counter() - t0)
        rows.append(_row("storage: fleet_page() alone", storage_samples, []))
    finally:
        await runner.cleanup()
    default_p50 = rows[0]["server_p50_ms"]
    worst = max(r["server_max_ms"] for r in rows if r["what"].startswith("console:"))
    ratio = baseline["server_p50_ms"] / default_p50
    return {
        "rows": rows,
        "stores": stores,
        "seed_s": round(seed_s, 1),
        "first_rollup_s": round(rollup_s, 1),
        "first_tick": {
            "stores": first.stores_refreshed,
            "events": first.events_counted,
            "alerts_opened": first.alerts.opened,
        },
        "steady_tick_s": round(tick_s, 3),
        "steady_tick_alerts_opened": steady.alerts.opened,
        "goal": {"fleet page server-side max": f"< {GOAL_MS:.0f} ms at {stores:,} stores"},
        "verdict": (
            f"worst console fleet request {worst:.0f} ms over {len(VARIANTS)} variants × "
            f"{rounds} requests at {stores:,} stores ({'meets' if worst < GOAL_MS else 'MISSES'} "
            f"the {GOAL_MS:.0f} ms goal); page 1 p50 {default_p50:.1f} ms vs "
            f"{baseline['server_p50_ms']:.0f} ms "
            f"for the fleet list without the roll-up ({ratio:.0f}× faster). First roll-up of "
            f"{stores:,} stores {rollup_s:.1f} s; a steady evaluator tick {tick_s * 1000:.0f} ms."
        ),
    }


def _timer(samples: list[float]) -> Any:
    """Outermost-but-one middleware: time from dispatch to a rendered response, server-side."""

    @web.middleware
    async def timer(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            samples.append(time.perf_counter() - started)

    return timer


def _row(what: str, server: list[float], http: list[float]) -> dict[str, Any]:
    s, h = percentiles(server), percentiles(http)
    row: dict[str, Any] = {"what": what, "requests": len(server)}
    row.update(server_p50_ms=s["p50_ms"], server_p99_ms=s["p99_ms"], server_max_ms=s["max_ms"])
    if h:
        row.update(http_p50_ms=h["p50_ms"], http_max_ms=h["max_ms"])
    if what.startswith("console:"):
        row["under_goal"] = s["max_ms"] < GOAL_MS
    return row


def _query(settings: ConsoleSettings) -> FleetQuery:
    now = datetime.now(UTC)
    return FleetQuery(FleetThresholds(now, settings.stale_after_s, settings.offline_after_s))


async def _login(http: aiohttp.ClientSession, url: str) -> None:
    form = await (await http.get(url + "/console/login")).text()
    token = re.search(r'name="_csrf" value="([^"]+)"', form)
    assert token
    response = await http.post(
        url + "/console/login",
        data={"username": "bench", "password": PASSWORD, "_csrf": token.group(1)},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()


async def _time(
    http: aiohttp.ClientSession,
    url: str,
    rounds: int,
    server_times: list[float],
    headers: dict[str, str] | None = None,
) -> list[float]:
    samples = []
    async with http.get(url, headers=headers) as warm:  # warms SQLite's page cache, not timed
        assert warm.status == 200, (url, warm.status)
        await warm.read()
    server_times.clear()
    for _ in range(rounds):
        t0 = time.perf_counter()
        async with http.get(url, headers=headers) as response:
            await response.read()
            assert response.status == 200
        samples.append(time.perf_counter() - t0)
    return samples


def main(argv: list[str] | None = None) -> None:
    """Seed, roll up, time; print the table and write bench/results/console.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.console")
    parser.add_argument("--stores", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.stores, args.rounds))
    rows = result.pop("rows")
    report("console", f"console fleet page at {args.stores:,} stores (SQLite)", rows, result)
    print(result["verdict"])


if __name__ == "__main__":
    main()
