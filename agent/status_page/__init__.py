"""The local status page: aiohttp on the box, loopback by default, LAN only with a token."""

from agent.status_page.server import RunningPage, start_status_page

__all__ = ["RunningPage", "start_status_page"]
