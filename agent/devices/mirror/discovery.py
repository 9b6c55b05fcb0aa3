"""Find mirrors on mDNS by their TXT id, and notice when one comes back on another address."""

import asyncio
import itertools
import logging
from dataclasses import dataclass, field

from pydantic import ValidationError
from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange, Zeroconf
from zeroconf import Error as ZeroconfError
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from protocol.mirror_api import SERVICE_TYPE, MirrorAdvert

log = logging.getLogger(__name__)

# Resolving SRV/TXT/A of an announced service; on a LAN the answer takes milliseconds.
RESOLVE_TIMEOUT_MS = 3000


@dataclass(frozen=True, slots=True)
class MirrorAddress:
    """Where a mirror's HTTP API listens, as of one announcement."""

    host: str
    port: int
    # Which resolution produced it: a mirror re-announced at the same address still counts
    # as news (it rebooted), so waiters compare this rather than host and port.
    announcement: int = field(default=0, compare=False)

    @property
    def url(self) -> str:
        """Base URL of the mirror's API."""
        return f"http://{self.host}:{self.port}"


class MirrorDiscovery:
    """Browses `service_type`; `lookup` and `wait_for` give a mirror's current address by id."""

    def __init__(self, aiozc: AsyncZeroconf, service_type: str = SERVICE_TYPE) -> None:
        self.bad_adverts = 0  # services of our type whose TXT record has no valid id
        self._aiozc = aiozc
        self._type = service_type
        self._found: dict[str, tuple[str, MirrorAddress]] = {}  # service name → (id, address)
        self._generation: dict[str, int] = {}  # per name, so a stale resolve cannot win
        self._changed = asyncio.Event()
        self._announcements = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._browser: AsyncServiceBrowser | None = None

    async def async_start(self) -> None:
        """Start browsing; answers arrive in the background."""
        if self._browser is None:
            # QM, not the default QU first query: where another mDNS stack shares port 5353
            # (avahi, or a second instance on loopback), SO_REUSEPORT hands the unicast answer
            # to just one socket, often not ours, and discovery waits ~1 s for the next query.
            self._browser = AsyncServiceBrowser(
                self._aiozc.zeroconf,
                [self._type],
                handlers=[self._on_change],
                question_type=DNSQuestionType.QM,
            )

    async def async_close(self) -> None:
        """Stop browsing and cancel resolutions in flight. Idempotent."""
        browser, self._browser = self._browser, None
        if browser is not None:
            await browser.async_cancel()
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> "MirrorDiscovery":
        await self.async_start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.async_close()

    def lookup(self, mirror_id: str) -> MirrorAddress | None:
        """The address `mirror_id` last announced, or None if it is not (or no longer) seen."""
        for found_id, address in reversed(self._found.values()):  # newest answer wins
            if found_id == mirror_id:
                return address
        return None

    def mirrors(self) -> dict[str, MirrorAddress]:
        """Every mirror seen now, by id."""
        return dict(self._found.values())

    def next_change(self) -> asyncio.Event:
        """An event set at the next announcement or removal; take it before looking."""
        return self._changed

    async def wait_for(
        self, mirror_id: str, timeout: float, newer_than: MirrorAddress | None = None
    ) -> MirrorAddress | None:
        """Wait until `mirror_id` is announced (after `newer_than`, if given); None on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed  # take it before looking: no change slips between
                    address = self.lookup(mirror_id)
                    if address is not None and (
                        newer_than is None or address.announcement > newer_than.announcement
                    ):
                        return address
                    await changed.wait()
        except TimeoutError:
            return None

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        # Runs in the loop, called with these keyword names (devices.md §3): must not block.
        generation = self._generation.get(name, 0) + 1
        self._generation[name] = generation
        if state_change is ServiceStateChange.Removed:
            if self._found.pop(name, None) is not None:
                self._notify()
            return
        task = asyncio.get_running_loop().create_task(self._resolve(name, generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, name: str, generation: int) -> None:
        info = AsyncServiceInfo(self._type, name)
        try:
            resolved = await info.async_request(self._aiozc.zeroconf, RESOLVE_TIMEOUT_MS)
        except ZeroconfError as exc:  # e.g. zeroconf closing under us; the next answer retries
            log.debug("mDNS: resolving %s failed: %r", name, exc)
            return
        if not resolved:
            log.debug("mDNS: %s did not resolve", name)
            return
        if self._generation.get(name) != generation:
            return  # removed or re-announced meanwhile; the newer answer decides
        try:
            advert = MirrorAdvert.from_properties(info.decoded_properties)
        except ValidationError:
            self.bad_adverts += 1
            log.warning("mDNS: %s has no valid id in its TXT record", name)
            return
        hosts = info.parsed_addresses(IPVersion.V4Only)
        if not hosts or not info.port:
            return
        address = MirrorAddress(hosts[0], info.port, next(self._announcements))
        self._found.pop(name, None)  # re-insert: dict order is "last resolved", used by lookup
        self._found[name] = (advert.id, address)
        log.info("mDNS: mirror %s at %s (%s)", advert.id, address.url, name)
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
