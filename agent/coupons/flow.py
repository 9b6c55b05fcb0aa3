"""The coupon flow: verify offline, check the ledger, reserve online or apply the offline policy,
record the outcome durably, print a voucher. Every presented token ends in exactly one
coupon.redeemed or coupon.rejected event with a precise reason (docs/COUPONS.md "Flow").
"""

import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from agent.config import CouponSection
from agent.coupons import ledger
from agent.coupons.business import ActiveConfig, BusinessConfigStore
from agent.coupons.errors import CloudUnreachable, UnknownCoupon
from agent.coupons.reachability import Reachability
from agent.coupons.remote import CouponCloud
from agent.coupons.staff import StaffEvent, StaffSessions
from agent.coupons.voucher import voucher_fields
from agent.outbox import Outbox
from protocol.coupon_events import (
    CampaignPolicy,
    Channel,
    CouponRedeemedPayload,
    CouponRejectedPayload,
    CouponRejectReason,
    ReservationMode,
    ReserveRequest,
)
from protocol.coupons import (
    CouponError,
    Expired,
    NotYetValid,
    UnknownKey,
    VerifiedCoupon,
    WrongStore,
    token_fingerprint,
    verify_token,
)
from protocol.ids import uuid7_str

log = logging.getLogger(__name__)

_DETAIL_LEN = 256  # CouponRejectedPayload.detail max_length
_STAFF_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")  # protocol.base.Id
# Reasons raised after the signature verified: the claims are the cloud's, so they may be
# named in the event and counted against their campaign.
_AUTHENTIC = (Expired, NotYetValid, WrongStore)

# Submits a voucher: (job_id, template, fields); None when no voucher printer is configured.
VoucherPrinter = Callable[[str, str, Mapping[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one presented token; `reason` is set for rejections."""

    status: Literal["redeemed", "rejected", "valid"]
    reason: CouponRejectReason | None = None
    detail: str | None = None
    coupon: VerifiedCoupon | None = None
    redemption_id: str | None = None
    mode: ReservationMode | None = None
    other_store_id: str | None = None
    staff_id: str | None = None


class CouponFlow:
    """One store's coupon decisions; each `present` is durable in the outbox when it returns."""

    def __init__(
        self,
        outbox: Outbox,
        store_id: str,
        config: BusinessConfigStore,
        settings: CouponSection,
        cloud: CouponCloud | None = None,
        printer: VoucherPrinter | None = None,
    ) -> None:
        self._outbox = outbox
        self.store_id = store_id
        self._config = config
        self._settings = settings
        self._cloud = cloud if settings.reserve_online else None
        self._printer = printer
        self.reachability = Reachability()
        self.staff = StaffSessions(settings.staff_session_timeout_s)
        self.counters: Counter[str] = Counter()

    async def present(
        self,
        token: str,
        device_id: str,
        channel: Channel,
        *,
        staff_id: str | None = None,
        pos_ref: str | None = None,
    ) -> Outcome:
        """Decide and record one redemption attempt; raises only if the outbox fails."""
        self.counters["presented"] += 1
        checked = await self._check(token, device_id, staff_id)
        if isinstance(checked, Outcome):
            return await self._reject(checked, token, device_id, channel)
        coupon, staff = checked
        claims = checked[0].claims
        redemption_id = uuid7_str()
        mode: ReservationMode = "not_required"
        if claims.single_use:
            decided = await self._single_use(coupon, redemption_id, staff)
            if isinstance(decided, Outcome):
                return await self._reject(decided, token, device_id, channel)
            mode = decided
        payload = CouponRedeemedPayload(
            redemption_id=redemption_id, campaign_id=claims.campaign_id,
            coupon_id=claims.coupon_id, key_id=claims.key_id, value_minor=claims.value_minor,
            currency=claims.currency, single_use=claims.single_use, reservation=mode,
            channel=channel, staff_id=staff, pos_ref=pos_ref,
        )  # fmt: skip
        guard = None
        if claims.single_use:
            guard = ledger.claim(claims.coupon_id, claims.campaign_id, redemption_id, mode,
                                 claims.value_minor, device_id, staff, claims.valid_to)  # fmt: skip
        result = await self._outbox.append(device_id, payload, guard=guard)
        if result.dropped == ledger.REFUSED:
            # Another device of this store committed the same coupon first.
            lost = Outcome("rejected", "already_redeemed_here", "redeemed here a moment ago",
                           coupon, staff_id=staff)  # fmt: skip
            return await self._reject(lost, token, device_id, channel)
        self.counters["redeemed"] += 1
        self.counters[f"redeemed_{mode}"] += 1
        outcome = Outcome("redeemed", coupon=coupon, redemption_id=redemption_id, mode=mode,
                          staff_id=staff)  # fmt: skip
        await self._print_voucher(outcome)
        return outcome

    async def validate(self, token: str, device_id: str) -> Outcome:
        """What `present` would decide offline now, without reserving or recording anything."""
        self.counters["validated"] += 1
        checked = await self._check(token, device_id, None, attribute=False)
        if isinstance(checked, Outcome):
            return checked
        coupon = checked[0]
        policy = self._active_campaign(coupon)
        claims = coupon.claims
        if (
            claims.single_use
            and policy is not None
            and claims.value_minor > policy.max_offline_value
        ):
            return Outcome("valid", "over_offline_limit", "needs an online reservation", coupon)
        return Outcome("valid", coupon=coupon)

    async def badge(self, device_id: str, text: str) -> None:
        """A staff badge scanned at `device_id`: log in, log out or hand over attribution."""
        if not _STAFF_ID.match(text):
            self.counters["badge_invalid_id"] += 1
            log.warning("%s: staff badge %r is not a valid id; ignored", device_id, text[:80])
            return
        self.counters["badges"] += 1
        await self._record_staff(self.staff.badge(device_id, text, time.time()))

    async def sweep(self) -> None:
        """End idle staff sessions (their logout events are recorded)."""
        await self._record_staff(self.staff.expire(time.time()))

    # --- steps ---------------------------------------------------------------------------

    async def _check(
        self, token: str, device_id: str, staff_id: str | None, attribute: bool = True
    ) -> tuple[VerifiedCoupon, str | None] | Outcome:
        staff = staff_id
        if staff is None and attribute:
            staff, events = self.staff.attribute(device_id, time.time())
            await self._record_staff(events)
        active = self._config.active
        try:
            if active is None:
                raise UnknownKey("no business config received from the cloud yet")
            coupon = verify_token(token, active.keys, datetime.now(UTC), self.store_id,
                                  leeway_s=self._settings.clock_leeway_s)  # fmt: skip
        except CouponError as exc:
            reason = cast(CouponRejectReason, exc.reason)  # one per CouponError subclass
            authentic = exc.claims if isinstance(exc, _AUTHENTIC) else None
            named = VerifiedCoupon(authentic, token) if authentic is not None else None
            return Outcome("rejected", reason, exc.detail, named, staff_id=staff)
        if coupon.claims.single_use:
            entry = await ledger.lookup(self._outbox, coupon.claims.coupon_id)
            if entry is not None:
                when = datetime.fromtimestamp(entry.redeemed_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
                detail = f"redeemed here {when} at {entry.device_id} ({entry.mode})"
                return Outcome("rejected", "already_redeemed_here", detail, coupon, staff_id=staff)
        return coupon, staff

    async def _single_use(
        self, coupon: VerifiedCoupon, redemption_id: str, staff: str | None
    ) -> ReservationMode | Outcome:
        """Reserve fleet-wide if the cloud answers in time, else the campaign's offline policy."""
        claims = coupon.claims
        cloud, active = self._cloud, self._config.active
        assert active is not None  # verify_token passed, so a config is active
        now = time.monotonic()
        if cloud is not None and self.reachability.should_try(now):
            request = ReserveRequest(coupon_id=claims.coupon_id, campaign_id=claims.campaign_id,
                                     redemption_id=redemption_id)  # fmt: skip
            timeout_s = active.config.coupons.reserve_timeout_ms / 1000
            try:
                answer = await cloud.reserve(request, timeout_s)
            except UnknownCoupon as exc:
                self.reachability.succeeded()
                return Outcome("rejected", "unknown_coupon", str(exc), coupon, staff_id=staff)
            except CloudUnreachable as exc:
                delay = self.reachability.failed(time.monotonic())
                self.counters["reserve_unreachable"] += 1
                log.info("reservation failed (%s); offline policy, next try in %.1fs", exc, delay)
            else:
                self.reachability.succeeded()
                self.counters[f"reserve_{answer.status}"] += 1
                if answer.status == "already_redeemed":
                    detail = f"redeemed at store {answer.store_id}"
                    return Outcome("rejected", "already_redeemed_elsewhere", detail, coupon,
                                   other_store_id=answer.store_id, staff_id=staff)  # fmt: skip
                return "reserved" if answer.status == "reserved" else "not_required"
        policy = _campaign(active, coupon)
        if claims.value_minor > policy.max_offline_value:
            limit = f"{policy.max_offline_value} {claims.currency} minor units"
            detail = f"offline limit {limit}, coupon worth {coupon.value_text}"
            return Outcome("rejected", "over_offline_limit", detail, coupon, staff_id=staff)
        return "offline"

    async def _reject(
        self, outcome: Outcome, token: str, device_id: str, channel: Channel
    ) -> Outcome:
        assert outcome.reason is not None
        self.counters["rejected"] += 1
        self.counters[f"rejected_{outcome.reason}"] += 1
        claims = outcome.coupon.claims if outcome.coupon is not None else None
        payload = CouponRejectedPayload(
            reason=outcome.reason,
            detail=(outcome.detail or "")[:_DETAIL_LEN] or None,
            channel=channel,
            campaign_id=claims.campaign_id if claims else None,
            coupon_id=claims.coupon_id if claims else None,
            key_id=claims.key_id if claims else None,
            other_store_id=outcome.other_store_id,
            token_fingerprint=token_fingerprint(token),
            staff_id=outcome.staff_id,
        )
        await self._outbox.append(device_id, payload)
        log.info("%s: coupon rejected: %s (%s)", device_id, outcome.reason, outcome.detail)
        return outcome

    async def _print_voucher(self, outcome: Outcome) -> None:
        if self._printer is None or outcome.coupon is None or outcome.redemption_id is None:
            return
        policy = self._active_campaign(outcome.coupon)
        name = policy.name if policy is not None else "Coupon"
        active = self._config.active
        fields = voucher_fields(outcome.coupon, outcome.redemption_id, outcome.mode, name,
                                self.store_id, outcome.staff_id,
                                receipt=active.config.receipt if active else None)  # fmt: skip
        try:
            # job_id = redemption_id: the print queue makes a resubmission a no-op.
            await self._printer(outcome.redemption_id, "coupon", fields)
        except Exception:  # the redemption stands whatever the printer does
            self.counters["voucher_errors"] += 1
            log.exception("voucher for redemption %s could not be queued", outcome.redemption_id)
        else:
            self.counters["vouchers"] += 1

    async def _record_staff(self, events: list[StaffEvent]) -> None:
        for device_id, payload in events:
            await self._outbox.append(device_id, payload)

    def _active_campaign(self, coupon: VerifiedCoupon) -> CampaignPolicy | None:
        active = self._config.active
        return None if active is None else active.campaigns.get(coupon.claims.campaign_id)


def _campaign(active: ActiveConfig, coupon: VerifiedCoupon) -> CampaignPolicy:
    # verify_token found the key, and keys come from campaigns: the policy exists.
    return active.campaigns[coupon.claims.campaign_id]
