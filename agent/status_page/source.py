"""The running agent as a StatusSource: its snapshot and its own drivers for the tests."""

from typing import TYPE_CHECKING, Any

from agent.diagnostics.device_tests import DeviceTestError, print_via_driver
from agent.snapshot import snapshot

if TYPE_CHECKING:
    from agent.runtime import AgentRuntime


class RuntimeSource:
    """Reads and acts on one AgentRuntime."""

    def __init__(self, runtime: "AgentRuntime") -> None:
        self._runtime = runtime

    async def snapshot(self) -> dict[str, Any]:
        """The runtime's snapshot."""
        return await snapshot(self._runtime)

    async def test_print(self, device_id: str) -> dict[str, Any]:
        """A test page through the running printer driver (its port is ours already)."""
        driver = self._device(device_id, "printer")
        return await print_via_driver(
            driver, self._runtime.recent, self._runtime.credentials.store_id
        )

    async def test_scan(self, device_id: str, timeout_s: float) -> dict[str, Any]:
        """The next scan the running scanner driver captures."""
        self._device(device_id, "scanner")
        return (await self._runtime.recent.next_scan(device_id, timeout_s)).as_json()

    def _device(self, device_id: str, kind: str) -> Any:
        driver = self._runtime.driver(device_id)
        if driver is None:
            raise DeviceTestError(f"no device {device_id!r} on this agent")
        if driver.kind != kind:
            raise DeviceTestError(f"{device_id} is a {driver.kind}, not a {kind}")
        return driver
