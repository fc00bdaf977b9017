"""The ASGI intake app (:class:`IntakeASGI`); it lives in :mod:`ndintake.server.asgi`.

    from ndintake.asgi import IntakeASGI
    app = IntakeASGI(sink=print)        # uvicorn module:app
"""

from .server.asgi import BodyReader, IntakeASGI, request_from_scope

__all__ = ["BodyReader", "IntakeASGI", "request_from_scope"]
