"""The agent's coupon calls to the cloud: GET /v1/config with ETag and POST /v1/coupons/reserve."""

import ssl

import aiohttp
from pydantic import ValidationError

from agent.coupons.errors import CloudUnreachable, UnknownCoupon
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

    async def fetch_config(self, etag: str | None) -> tuple[BusinessConfig | None, str | None]:
        """(config, its ETag), or (None, etag) when unchanged (304); CloudUnreachable."""
        headers = dict(self._headers)
        if etag:
            headers["If-None-Match"] = etag
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
                    return None, etag
                body = await response.read()
                if response.status != 200:
                    raise CloudUnreachable(f"GET /v1/config: HTTP {response.status}")
                config = BusinessConfig.model_validate_json(body)
                return config, response.headers.get("ETag")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CloudUnreachable(f"GET /v1/config: {type(exc).__name__}: {exc}") from exc
        except ValidationError as exc:
            raise CloudUnreachable(f"GET /v1/config: unreadable config: {exc}") from exc

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
