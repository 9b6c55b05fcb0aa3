"""`storeedge agent doctor`: every check a field engineer needs, as a pass/fail table."""

import time
from collections.abc import Callable
from pathlib import Path

from agent.diagnostics import local_api
from agent.diagnostics.checks import CheckResult
from agent.diagnostics.cloud_checks import check_cloud
from agent.diagnostics.device_checks import from_running_agent, probe_mirrors, probe_printers
from agent.diagnostics.system import (
    DEFAULT_MIN_FREE_BYTES,
    Account,
    check_config,
    check_credentials,
    check_disk,
    check_node,
    check_state_dir,
    device_nodes,
)


async def run_doctor(
    config_path: Path,
    *,
    user: str | None = None,
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
    clock: Callable[[], float] = time.time,
) -> list[CheckResult]:
    """All checks in dependency order; never raises for a fault it can describe."""
    result, config = check_config(config_path)
    results = [result]
    if config is None:
        return results
    account = Account.lookup(user)
    state_dir = Path(config.agent.state_dir)
    results.append(check_state_dir(state_dir, account))
    results.append(check_disk(state_dir, config, min_free_bytes))
    enrolled, credentials = check_credentials(state_dir)
    results.append(enrolled)

    running = None
    try:
        status, body = await local_api.call(config, "GET", "/api/status")
        if status == 200:
            running = body
    except local_api.AgentNotRunning:
        running = None
    if running is not None:
        results.append(
            CheckResult.ok("agent", f"running, status page at {local_api.base_url(config)}")
        )
        for wedge in running.get("watchdog", {}).get("wedged", []):
            results.append(
                CheckResult.fail(
                    f"loop {wedge['name']}",
                    "stuck (watchdog withheld)",
                    "systemd restarts the agent; if it recurs, journalctl -u storeedge-agent",
                )
            )
    else:
        results.append(CheckResult.skip("agent", "not running: devices are probed directly"))

    for device_id, path, write in device_nodes(config):
        results.append(check_node(device_id, path, write, account))
    if running is not None:
        results.extend(from_running_agent(running))
    else:
        results.extend(await probe_printers(config))
        results.extend(await probe_mirrors(config))
    results.extend(await check_cloud(config.cloud.url, credentials, config.cloud.ca_bundle, clock))
    return results
