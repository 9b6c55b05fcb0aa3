"""Typed keys of the application state."""

from aiohttp import web

from cloud.auth import AgentAuthenticator
from cloud.config import CloudConfig
from cloud.counters import Counters
from cloud.gate import Gate
from cloud.metrics import Metrics
from cloud.storage.base import Storage
from cloud.storage.coupons import CouponStorage
from cloud.storage.settings import ConfigStorage

CONFIG = web.AppKey("config", CloudConfig)
COUNTERS = web.AppKey("counters", Counters)
METRICS = web.AppKey("metrics", Metrics)
STORAGE = web.AppKey("storage", Storage)
AGENT_AUTH = web.AppKey("agent_auth", AgentAuthenticator)
INGEST_GATE = web.AppKey("ingest_gate", Gate)  # POST /v1/events
AGENT_GATE = web.AppKey("agent_gate", Gate)  # the other agent calls (heartbeat, enroll)
COUPON_STORAGE = web.AppKey("coupon_storage", CouponStorage)
SETTINGS_STORAGE = web.AppKey("settings_storage", ConfigStorage)
