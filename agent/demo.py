"""`storeedge demo`: the whole product on one machine, with a cloud outage every minute."""

import asyncio
import contextlib
import logging
import random
import secrets
import signal
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from zeroconf.asyncio import AsyncZeroconf

from agent.config import (
    AgentConfig,
    AgentSection,
    CloudSection,
    CouponSection,
    MirrorConfig,
    SerialScannerConfig,
    StatusPageSection,
    TcpPrinterConfig,
)
from agent.credentials import enroll, save_credentials
from agent.devices.printer.driver import EscPosPrinter
from agent.outbox import oldest_age_s
from agent.runtime import AgentRuntime
from cloud.config import CloudConfig, new_admin_token
from cloud.console.accounts import ensure_user
from cloud.coupon_models import CampaignCreate, IssueRequest
from cloud.coupons import create_campaign, issue
from cloud.keys import COUPON_STORAGE
from cloud.service import RunningCloud, start_cloud
from hardware.emulators.mirror import MirrorEmulator, shopper_traffic
from hardware.emulators.printer import PrinterEmulator
from hardware.emulators.scanner import PtyScanner, realistic_scans

STORE_ID = "store-demo-001"
# A second store on the same campaign: redeeming while the cloud is out, it sometimes takes a
# coupon the first store already used, and the console shows the conflict once both sync.
NEIGHBOUR_ID = "store-demo-002"
NEIGHBOUR_COUPON_EVERY_S = 9.0
NEIGHBOUR_REPLAY_SHARE = 0.5  # of its redemptions during an outage
# A cloud outage every OUTAGE_EVERY_S, lasting OUTAGE_S: long enough to see the backlog grow
# and drain, short enough to watch a few cycles.
OUTAGE_EVERY_S = 60.0
OUTAGE_S = 15.0
SCANS_PER_S = 3.0
STATUS_EVERY_S = 1.0
RECEIPT_EVERY_S = 20.0
MIRROR_ID = "emu-mirror-1"
# A shopper presents a coupon about this often; some are replays of one already used, and a
# shopping guide badges in now and then, so every outcome shows up in the console.
COUPON_EVERY_S = 6.0
REPLAY_SHARE = 0.15
DEMO_COUPONS = 300
OFFLINE_LIMIT = 5000  # 50.00 CNY: the 80.00 coupons are refused while the cloud is down
CONSOLE_USER = "admin"


@dataclass
class DemoOptions:
    """What `storeedge demo` was asked for."""

    workdir: Path
    port: int = 8080
    duration_s: float | None = None
    outage_every_s: float = OUTAGE_EVERY_S
    outage_s: float = OUTAGE_S
    scans_per_s: float = SCANS_PER_S


class DemoCloud:
    """The cloud service in-process, so the demo can take it down and bring it back."""

    def __init__(self, db_url: str, admin_token: str, port: int) -> None:
        self.config = CloudConfig(db_url=db_url, admin_token=admin_token, port=port)
        self.url = f"http://127.0.0.1:{port}"
        self._running: RunningCloud | None = None

    @property
    def up(self) -> bool:
        """True while the cloud is serving."""
        return self._running is not None

    async def start(self) -> None:
        """Serve on the same port and database as before (port 0: a free one, then kept)."""
        self._running = await start_cloud(self.config)
        if self.config.port == 0:
            self.config = replace(self.config, port=self._running.port)
            self.url = self._running.url

    async def stop(self) -> None:
        """Stop serving (the outage); storage is closed, data kept."""
        if self._running is not None:
            running, self._running = self._running, None
            await running.stop()

    async def coupon_tokens(self) -> tuple[int, list[str]]:
        """A running campaign with DEMO_COUPONS coupons, most of them under the offline limit."""
        assert self._running is not None
        coupons = self._running.app[COUPON_STORAGE]
        now = datetime.now(UTC)
        body = CampaignCreate(
            name="Demo spring sale", currency="CNY", max_offline_value=OFFLINE_LIMIT,
            valid_from=now - timedelta(hours=1), valid_to=now + timedelta(days=30),
        )  # fmt: skip
        campaign = await create_campaign(coupons, body)
        tokens: list[str] = []
        for value, share in ((2000, 0.6), (3000, 0.3), (8000, 0.1)):
            ask = IssueRequest(count=int(DEMO_COUPONS * share), value=value)
            tokens += [c.token for c in await issue(coupons, campaign.campaign_id, ask)]
        random.shuffle(tokens)
        return campaign.campaign_id, tokens

    async def enroll_code(self, store_id: str) -> str:
        """A fresh single-use enrollment code for `store_id`."""
        assert self._running is not None
        return (await self._running.create_enroll_code(store_id)).code


async def run_demo(options: DemoOptions) -> int:
    """Run until SIGINT/SIGTERM or `duration_s`; returns the process exit code."""
    workdir = options.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    state_dir = workdir / "agent-state"
    # The status line is the demo's screen; the agent's and cloud's logs go to a file beside it.
    logging.basicConfig(
        filename=workdir / "demo.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    cloud = DemoCloud(f"sqlite:///{workdir / 'cloud.db'}", new_admin_token(), options.port)
    try:
        await cloud.start()
    except OSError as exc:
        print(
            f"storeedge demo: cannot listen on 127.0.0.1:{options.port} ({exc.strerror}); "
            "pass --port N, or --port 0 for any free port",
            file=sys.stderr,
        )
        return 2
    console_password = secrets.token_urlsafe(12)
    await ensure_user(cloud.config.db_url, CONSOLE_USER, "admin", console_password, "demo")
    code = await cloud.enroll_code(STORE_ID)
    credentials = await enroll(cloud.url, code)
    save_credentials(state_dir, credentials)
    neighbour_code = await cloud.enroll_code(NEIGHBOUR_ID)
    neighbour_credentials = await enroll(cloud.url, neighbour_code)
    save_credentials(workdir / "neighbour-state", neighbour_credentials)
    campaign_id, tokens = await cloud.coupon_tokens()
    scanner = PtyScanner(workdir / "scanner")
    neighbour_scanner = PtyScanner(workdir / "neighbour-scanner")
    printer = PrinterEmulator()
    printer_port = await printer.start_tcp()
    # mDNS stays on loopback: the demo must not announce anything on the store's real LAN.
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
    mirror = MirrorEmulator(MIRROR_ID, zeroconf=zeroconf)
    await mirror.start()
    config = AgentConfig(
        agent=AgentSection(state_dir=state_dir, log_level="WARNING"),
        cloud=CloudSection(url=cloud.url, heartbeat_interval_s=5, backoff_cap_s=5),
        coupons=CouponSection(voucher_printer="printer-till", config_poll_interval_s=10),
        devices=[
            SerialScannerConfig(
                id="scanner-front", kind="scanner", transport="serial", port=str(scanner.link)
            ),
            TcpPrinterConfig(
                id="printer-till", kind="printer", transport="tcp", host="127.0.0.1",
                port=printer_port,
            ),
            MirrorConfig(
                id="mirror-fitting-1", kind="mirror", transport="mdns", mirror_id=MIRROR_ID,
                mdns_interfaces=["127.0.0.1"],
            ),
        ],
    )  # fmt: skip
    neighbour_config = AgentConfig(
        agent=AgentSection(state_dir=workdir / "neighbour-state", log_level="WARNING"),
        cloud=config.cloud,
        coupons=CouponSection(config_poll_interval_s=10),
        status_page=StatusPageSection(enabled=False),  # one box, one status page: the first's
        devices=[
            SerialScannerConfig(id="scanner-till", kind="scanner", transport="serial",
                                port=str(neighbour_scanner.link)),
        ],
    )  # fmt: skip
    _print_banner(
        cloud, credentials.agent_id, scanner.link, workdir, options, campaign_id, console_password
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runtime = AgentRuntime(config, credentials)
    agent = asyncio.create_task(runtime.run(stop))
    neighbour = asyncio.create_task(AgentRuntime(neighbour_config, neighbour_credentials).run(stop))
    await runtime.started.wait()
    used: list[str] = []
    helpers = [
        asyncio.create_task(_traffic(scanner, options.scans_per_s)),
        asyncio.create_task(_coupon_traffic(scanner, tokens, used)),
        asyncio.create_task(_neighbour_coupons(neighbour_scanner, tokens, used, cloud)),
        asyncio.create_task(shopper_traffic(mirror, random.Random(), pace_s=3.0)),
        asyncio.create_task(_receipts(runtime)),
        asyncio.create_task(_outages(cloud, options)),
        asyncio.create_task(_status_line(runtime, cloud)),
    ]
    if options.duration_s is not None:
        loop.call_later(options.duration_s, stop.set)
    await stop.wait()
    for task in helpers:
        task.cancel()
    await asyncio.gather(*helpers, return_exceptions=True)
    await agent
    await neighbour
    await cloud.stop()
    scanner.close()
    neighbour_scanner.close()
    await mirror.close()
    await zeroconf.async_close()
    await printer.close()
    print(f"\nthe emulated printer printed {len(printer.receipts)} receipts")
    print("\ndemo stopped; state kept in", workdir)
    return 0


async def _traffic(scanner: PtyScanner, per_second: float) -> None:
    """Realistic scans (EAN-13, GS1-128, QR, now and then garbage) at about `per_second`."""
    scans = realistic_scans(random.Random())
    while True:
        await asyncio.sleep(random.expovariate(per_second))
        with contextlib.suppress(Exception):  # a full pty while the agent restarts is fine
            await asyncio.to_thread(scanner.scan, next(scans))


async def _coupon_traffic(scanner: PtyScanner, tokens: list[str], used: list[str]) -> None:
    """Shoppers presenting coupons at the till scanner, online or not; some twice."""
    rng = random.Random()
    while tokens:
        await asyncio.sleep(rng.expovariate(1 / COUPON_EVERY_S))
        if rng.random() < 0.05:
            text = "STAFF-0042"  # a shopping guide badges in (or out) at the till
        elif used and rng.random() < REPLAY_SHARE:
            text = rng.choice(used)
        else:
            text = tokens.pop()
            used.append(text)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(scanner.scan, text)


async def _neighbour_coupons(
    scanner: PtyScanner, tokens: list[str], used: list[str], cloud: "DemoCloud"
) -> None:
    """The second store's till: fresh coupons, and while the cloud is out, some already used."""
    rng = random.Random()
    while tokens or used:
        await asyncio.sleep(rng.expovariate(1 / NEIGHBOUR_COUPON_EVERY_S))
        if used and (not tokens or (not cloud.up and rng.random() < NEIGHBOUR_REPLAY_SHARE)):
            text = rng.choice(used)  # redeemed offline here too: a conflict once both sync
        else:
            text = tokens.pop()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(scanner.scan, text)


async def _receipts(runtime: AgentRuntime) -> None:
    """A sale every RECEIPT_EVERY_S: a receipt through the durable print queue."""
    number = 0
    while True:
        await asyncio.sleep(RECEIPT_EVERY_S)
        for driver in runtime.drivers:
            if isinstance(driver, EscPosPrinter):
                number += 1
                fields = {
                    "store_name": "StoreEdge Demo",
                    "receipt_no": f"D{int(time.time())}-{number}",
                    "printed_at": time.strftime("%Y-%m-%d %H:%M"),
                    "items": [{"name": "Linen shirt", "qty": 1, "unit_price_cents": 29900}],
                }
                await driver.submit_template(f"demo-receipt-{number}", "receipt", fields)


async def _outages(cloud: DemoCloud, options: DemoOptions) -> None:
    while True:
        await asyncio.sleep(options.outage_every_s)
        await cloud.stop()
        _say(f"cloud DOWN for {options.outage_s:.0f}s (simulated outage); capture goes on")
        await asyncio.sleep(options.outage_s)
        await cloud.start()
        _say("cloud UP again: the backlog drains")


async def _status_line(runtime: AgentRuntime, cloud: DemoCloud) -> None:
    while True:
        await asyncio.sleep(STATUS_EVERY_S)
        if runtime.outbox is None or runtime.drain is None:
            continue
        stats = await runtime.outbox.stats()
        counters = runtime.drain.counters
        age = oldest_age_s(stats)
        devices = " ".join(f"{h.device_id}={h.state}" for h in runtime.device_health())
        coupons = runtime.coupons.flow.counters if runtime.coupons is not None else {}
        line = (
            f"captured {stats.next_seq - 1:>6} | buffered {stats.backlog_events:>5}"
            f"{f' (oldest {age:4.0f}s)' if age else ' ' * 14} | "
            f"synced {counters.accepted + counters.duplicate:>6} | "
            f"cloud {'UP  ' if cloud.up else 'DOWN'} | sync {runtime.drain.state.value:<11} | "
            f"coupons {coupons.get('redeemed', 0)} redeemed "
            f"({coupons.get('redeemed_offline', 0)} offline), {coupons.get('rejected', 0)} refused"
            f" | {devices}"
        )
        if sys.stdout.isatty():
            print("\r" + line, end="", flush=True)
        elif int(time.monotonic()) % 5 == 0:
            print(line, flush=True)


def _say(message: str) -> None:
    prefix = "\n" if sys.stdout.isatty() else ""
    print(f"{prefix}[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _print_banner(
    cloud: DemoCloud,
    agent_id: str,
    link: Path,
    workdir: Path,
    options: DemoOptions,
    campaign_id: int,
    console_password: str,
) -> None:
    token = cloud.config.admin_token
    print(
        f"""storeedge demo
  console      {cloud.url}/console/  login {CONSOLE_USER} / {console_password}
  cloud        {cloud.url}  (SQLite at {workdir / "cloud.db"})
  admin token  {token}
  store        {STORE_ID}, agent {agent_id}; and {NEIGHBOUR_ID}, a till scanner on the same campaign
  devices      scanner on a pty at {link}; ESC/POS printer on TCP; mirror found over mDNS
  logs         {workdir / "demo.log"}
  outage       the cloud goes down every {options.outage_every_s:.0f}s for {options.outage_s:.0f}s

Look at it:
  curl -s -H 'Authorization: Bearer {token}' {cloud.url}/api/stores
  curl -s -H 'Authorization: Bearer {token}' '{cloud.url}/api/events/count?store_id={STORE_ID}'
  curl -s -H 'Authorization: Bearer {token}' '{cloud.url}/api/events?store_id={STORE_ID}&limit=5'
  curl -s -H 'Authorization: Bearer {token}' {cloud.url}/api/campaigns/{campaign_id}/stats
  curl -s -H 'Authorization: Bearer {token}' {cloud.url}/api/coupons/conflicts
Ctrl-C stops.
""",
        flush=True,
    )
