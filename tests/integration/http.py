"""Plain HTTP(S) GETs against the servers a test starts (metrics, probes), with an optional bearer token."""

from __future__ import annotations

import aiohttp


async def get(url: str, token: str | None = None) -> tuple[int, str]:
    """Status and body of ``GET url``; TLS is not verified (the servers use self-signed certificates)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers, ssl=False) as resp:
        return resp.status, await resp.text()
