"""Cloud ingest service: `create_app` (cloud.app), `start_cloud` (cloud.service), storage, CLI.

Kept import-free so `storeedge` can register the CLI without loading aiohttp or sqlite3.
"""
