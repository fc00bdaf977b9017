"""The aiohttp intake app (:class:`IntakeAiohttp`); it lives in :mod:`ndintake.server.aiohttp`."""

from .server.aiohttp import IntakeAiohttp, request_from_aiohttp, server_decompresses

__all__ = ["IntakeAiohttp", "request_from_aiohttp", "server_decompresses"]
