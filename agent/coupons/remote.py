"""The agent's coupon calls to the cloud: GET /v1/config with ETag and POST /v1/coupons/reserve."""

import ssl

import aiohttp
from pydantic import ValidationError

from agent.coupons.errors import CloudUnreachable, UnknownCoupon, UnreadableConfig
from agent.sync.client import Credentials
from protocol.coupon_events import BusinessConfig, ReserveRequest, ReserveResponse

CONFIG_TIMEOUT_S = 15.0


class CouponCloud:
    """One aiohttp session for coupon traffic, apart from the drain's so neither waits."""

    def __init__(self, credentials: Credentials, ssl_context: ssl.SSLContext | None = None) -> None:
        self._base = credentials.cloud_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {credentials.token}"}
        self._session: aiohttp.ClientSession | None = None
        # Verified TLS always; a pinned CA when [cloud] ca_bundle is set (agent/tls.py).
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True

    async def fetch_config(
        self, etag: str | None, *also: str | None
    ) -> tuple[BusinessConfig | None, str | None]:
        """(config, its ETag), or (None, the ETag that matched) on 304; CloudUnreachable.

        `also`: more ETags the agent needs no copy of (one it refused), sent in the same
        If-None-Match. UnreadableConfig for a 200 whose body does not parse.
        """
        headers = dict(self._headers)
        tags = [tag for tag in (etag, *also) if tag]
        if tags:
            headers["If-None-Match"] = ", ".join(tags)
        timeout = aiohttp.ClientTimeout(total=CONFIG_TIMEOUT_S)
        try:
            async with self._http().get(
                self._base + "/v1/config",
                headers=headers,
                timeout=timeout,
                ssl=self._ssl,
                allow_redirects=False,
            ) as response:
                if response.status == 304:
                    return None, response.headers.get("ETag", etag)
                body = await response.read()
                if response.status != 200:
                    raise CloudUnreachable(f"GET /v1/config: HTTP {response.status}")
                tag = response.headers.get("ETag")
                try:
                    return BusinessConfig.model_validate_json(body), tag
                except ValidationError as exc:
                    reason = f"unreadable config: {_first_error(exc)}"
                    raise UnreadableConfig(reason, tag) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CloudUnreachable(f"GET /v1/config: {type(exc).__name__}: {exc}") from exc

    async def reserve(self, request: ReserveRequest, timeout_s: float) -> ReserveResponse:
        """The cloud's verdict within `timeout_s`; UnknownCoupon (404) or CloudUnreachable."""
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._http().post(
                self._base + "/v1/coupons/reserve",
                data=request.model_dump_json(),
                headers={**self._headers, "Content-Type": "application/json"},
                timeout=timeout,
                ssl=self._ssl,
                allow_redirects=False,
            ) as response:
                body = await response.read()
                if response.status == 404:
                    raise UnknownCoupon(f"coupon {request.coupon_id} was never issued")
                if response.status not in (200, 409):
                    raise CloudUnreachable(f"reserve: HTTP {response.status}")
                return ReserveResponse.model_validate_json(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CloudUnreachable(f"reserve: {type(exc).__name__}: {exc}") from exc
        except ValidationError as exc:
            raise CloudUnreachable(f"reserve: unreadable answer: {exc}") from exc

    async def close(self) -> None:
        """Close the session; idempotent."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def _first_error(exc: ValidationError) -> str:
    """The first bad field and why, e.g. `receipt.colour: Extra inputs are not permitted`."""
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    path = ".".join(str(part) for part in first["loc"]) or "body"
    extra = exc.error_count() - 1
    return f"{path}: {first['msg']}" + (f" (and {extra} more)" if extra else "")
