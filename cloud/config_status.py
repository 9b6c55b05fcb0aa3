"""Desired vs applied business config of a store: what the cloud serves, what each agent runs.

One judgement shared by the admin API (`GET /api/stores/{id}`, `…/config`) and the console's
store page, so both always agree on "in sync" and "refusing".
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from cloud.coupons import business_config
from cloud.settings import EffectiveSettings, effective_settings
from cloud.storage.coupons import CouponStorage
from cloud.storage.settings import AgentConfigState, ConfigStorage
from protocol.settings import ConfigRefusal


@dataclass(frozen=True, slots=True)
class AgentConfigStatus:
    """One agent's last config report, judged against what its store should run now."""

    agent_id: str
    changed_at: datetime
    applied_version: int | None
    applied_hash: str | None
    in_sync: bool  # runs exactly the config the cloud serves the store now
    refusing: bool  # refused that very config (not an older, since-replaced one)
    last_refusal: ConfigRefusal | None  # kept after it heals, so the reason stays visible


@dataclass(frozen=True, slots=True)
class StoreConfigStatus:
    """The store's desired config (settings and content hash) and every reporting agent."""

    store_id: str
    settings: EffectiveSettings
    config_hash: str  # BusinessConfig.version: the ETag agents fetch
    agents: tuple[AgentConfigStatus, ...]

    @property
    def settings_version(self) -> int:
        """max(fleet version, store version); 0 when neither was ever written."""
        return self.settings.version


async def store_config_status(
    config: ConfigStorage, coupons: CouponStorage, store_id: str, now: datetime | None = None
) -> StoreConfigStatus:
    """What `store_id` should run as of `now` beside what each of its agents reported."""
    effective = await effective_settings(config, store_id)
    desired = await business_config(coupons, store_id, now or datetime.now(UTC), effective)
    reports = await config.config_reports(store_id)
    agents = tuple(_judge(r, desired.version) for r in reports)
    return StoreConfigStatus(store_id, effective, desired.version, agents)


def _judge(state: AgentConfigState, desired_hash: str) -> AgentConfigStatus:
    refusal = state.refusal
    return AgentConfigStatus(
        agent_id=state.agent_id,
        changed_at=state.changed_at,
        applied_version=state.applied_version,
        applied_hash=state.applied_hash,
        in_sync=state.applied_hash == desired_hash,
        refusing=refusal is not None
        and refusal.config_hash == desired_hash
        and state.applied_hash != desired_hash,
        last_refusal=refusal,
    )
