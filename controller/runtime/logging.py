"""structlog set-up: JSON lines in the cluster, readable console output locally, one format for everything.

Log lines from the standard ``logging`` module (aiohttp, asyncio, libraries) go through the same renderer, so a
log collector never sees two formats. Context bound with :func:`bind_reconcile_context` (or any
``structlog.contextvars`` call) is merged into every line written by the same asyncio task, which is how each
reconcile's ``controller``/``namespace``/``name``/``reconcileID`` reaches the lines its code logs.

``cache_logger_on_first_use`` stays off on purpose: cached loggers ignore a later :func:`configure_logging`
(tests and CLIs reconfigure), and the saving is a dictionary lookup per call.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from controller.runtime.request import Request

LogFormat = Literal["json", "console"]

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def parse_level(level: str | int) -> int:
    """A level name (any case) or a number to the ``logging`` level number; ValueError names the choices."""
    if isinstance(level, int):
        return level
    text = level.strip().lower()
    if text.isdigit():
        return int(text)
    try:
        return LEVELS[text]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(sorted(set(LEVELS)))}") from None


def _orjson_dumps(event: EventDict, **_: Any) -> str:
    # default=str keeps a line even when a value (a Resource, an exception) is not JSON-native.
    return orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


_LEADING_KEYS = ("ts", "level", "logger", "msg")


def _json_layout(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """``msg`` like controller-runtime's zap output (dashboards and queries carry over), leading keys first."""
    if "event" in event_dict and "msg" not in event_dict:
        event_dict["msg"] = event_dict.pop("event")
    ordered = {k: event_dict.pop(k) for k in _LEADING_KEYS if k in event_dict}
    ordered.update(event_dict)
    return ordered


class _RuntimeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler :func:`configure_logging` installs, recognisable so a re-configuration replaces it."""


def configure_logging(
    level: str | int = "info",
    fmt: LogFormat = "json",
    *,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the standard ``logging`` root for this process.

    ``fmt="json"`` writes one JSON object per line (``ts``, ``level``, ``logger``, ``msg`` and the bound
    context); ``"console"`` writes aligned, coloured-if-a-terminal lines for people. ``stream`` defaults to
    stderr, as Go operators log. Calling it again replaces the previous configuration.
    """
    if fmt not in ("json", "console"):
        raise ValueError(f"unknown log format {fmt!r}: use 'json' or 'console'")
    level_no = parse_level(level)
    out = stream if stream is not None else sys.stderr

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: list[Processor]
    if fmt == "json":
        renderer = [
            # Never locals: they hold tokens and Secret data that must not reach a log store.
            structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False)),
            _json_layout,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ]
    else:
        colors = bool(getattr(out, "isatty", lambda: False)())
        renderer = [structlog.dev.ConsoleRenderer(colors=colors, timestamp_key="ts")]

    # structlog loggers hand their event dict to stdlib logging, so both kinds of lines share one handler.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = _RuntimeHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _RuntimeHandler):  # replace ours, keep handlers others installed (pytest's caplog)
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_no)
    # aiohttp's access log repeats every probe and scrape; keep it out unless debugging.
    logging.getLogger("aiohttp.access").setLevel(max(level_no, logging.WARNING))


def new_reconcile_id() -> str:
    return str(uuid.uuid4())


@contextmanager
def bind_reconcile_context(controller: str, request: Request, reconcile_id: str | None = None) -> Iterator[str]:
    """Bind ``controller``, ``namespace``, ``name`` and a fresh ``reconcileID`` for the code in the block.

    contextvars are per asyncio task, so concurrent reconciles on other workers never see each other's keys;
    the previous values are restored on exit. Yields the reconcile ID.
    """
    rid = reconcile_id or new_reconcile_id()
    with structlog.contextvars.bound_contextvars(
        controller=controller, namespace=request.namespace, name=request.name, reconcileID=rid
    ):
        yield rid


__all__ = ["LEVELS", "LogFormat", "bind_reconcile_context", "configure_logging", "new_reconcile_id", "parse_level"]
