"""Typed keys of the console's application and request state."""

from dataclasses import dataclass

from aiohttp import web

from cloud.console.coupons import CouponSource
from cloud.console.evaluator import AlertEvaluator
from cloud.console.live import LiveHub
from cloud.console.passwords import Passwords
from cloud.console.settings import ConsoleSettings
from cloud.console.throttle import LoginThrottle
from cloud.storage.console import ConsoleStorage, SessionRecord


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in user of a request and the hash of their session cookie."""

    session: SessionRecord
    token_hash: str


CONSOLE_SETTINGS = web.AppKey("console_settings", ConsoleSettings)
CONSOLE_STORAGE = web.AppKey("console_storage", ConsoleStorage)
LIVE_HUB = web.AppKey("live_hub", LiveHub)
EVALUATOR = web.AppKey("evaluator", AlertEvaluator)
PASSWORDS = web.AppKey("passwords", Passwords)
LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
COUPONS = web.AppKey("coupons", CouponSource)
PRINCIPAL = web.RequestKey("principal", Principal)
