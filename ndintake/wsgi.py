"""The WSGI intake app (:class:`IntakeWSGI`); it lives in :mod:`ndintake.server.wsgi`.

    from ndintake.wsgi import IntakeWSGI
    app = IntakeWSGI(sink=print)        # gunicorn module:app
"""

from .server.wsgi import IntakeWSGI, request_from_environ, status_line

__all__ = ["IntakeWSGI", "request_from_environ", "status_line"]
