from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from controller.runtime.logging import _RuntimeHandler, bind_reconcile_context, configure_logging, parse_level
from controller.runtime.request import Request


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_timestamp_level_logger_message_and_fields() -> None:
    buf = io.StringIO()
    configure_logging("info", "json", stream=buf)
    structlog.get_logger("my.module").info("reconciled", objects=3)
    [line] = lines(buf)
    assert line["msg"] == "reconciled"
    assert line["level"] == "info"
    assert line["logger"] == "my.module"
    assert line["objects"] == 3
    assert str(line["ts"]).endswith("Z")
    assert list(line)[:4] == ["ts", "level", "logger", "msg"]


def test_level_filters_lower_levels() -> None:
    buf = io.StringIO()
    configure_logging("warning", "json", stream=buf)
    log = structlog.get_logger("x")
    log.info("dropped")
    log.warning("kept")
    assert [line["msg"] for line in lines(buf)] == ["kept"]


def test_standard_library_records_use_the_same_json_format() -> None:
    buf = io.StringIO()
    configure_logging("info", "json", stream=buf)
    logging.getLogger("aiohttp.client").warning("connection reset %s", "by peer")
    [line] = lines(buf)
    assert line["msg"] == "connection reset by peer"
    assert line["logger"] == "aiohttp.client"
    assert line["level"] == "warning"


def test_reconfiguring_replaces_format_and_level() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    log = structlog.get_logger("x")
    log.info("one")
    configure_logging("debug", "console", stream=second)
    log.debug("two", key="value")
    assert [line["msg"] for line in lines(first)] == ["one"]
    out = second.getvalue()
    assert "two" in out and "key=value" in out
    assert not out.lstrip().startswith("{")
    ours = [h for h in logging.getLogger().handlers if isinstance(h, _RuntimeHandler)]
    assert len(ours) == 1  # replaced, not stacked: no line is written twice


def test_exceptions_are_structured_without_local_variables() -> None:
    buf = io.StringIO()
    configure_logging("info", "json", stream=buf)
    password = "hunter2"  # a local that must not reach the log
    try:
        raise RuntimeError(f"failed for user {len(password)}")
    except RuntimeError:
        structlog.get_logger("x").exception("reconcile failed")
    [line] = lines(buf)
    assert "hunter2" not in buf.getvalue()
    exc = line["exception"]
    assert isinstance(exc, list)
    assert exc[0]["exc_type"] == "RuntimeError"


def test_bound_reconcile_context_appears_in_every_line_and_is_removed_after() -> None:
    buf = io.StringIO()
    configure_logging("info", "json", stream=buf)
    log = structlog.get_logger("x")
    with bind_reconcile_context("secrets", Request("ns1", "obj")) as rid:
        log.info("inside")
        logging.getLogger("lib").info("library line")
    log.info("outside")
    inside, library, outside = lines(buf)
    for line in (inside, library):
        assert line["controller"] == "secrets"
        assert line["namespace"] == "ns1"
        assert line["name"] == "obj"
        assert line["reconcileID"] == rid
    assert "reconcileID" not in outside and "controller" not in outside


async def test_concurrent_tasks_keep_their_own_reconcile_context() -> None:
    buf = io.StringIO()
    configure_logging("info", "json", stream=buf)
    log = structlog.get_logger("x")
    gate = asyncio.Event()

    async def reconcile(name: str) -> str:
        with bind_reconcile_context("c", Request("ns", name)) as rid:
            await gate.wait()
            log.info("done", who=name)
            return rid

    tasks = [asyncio.create_task(reconcile(n)) for n in ("a", "b", "c")]
    await asyncio.sleep(0)
    gate.set()
    rids = dict(zip("abc", await asyncio.gather(*tasks), strict=True))
    assert len(set(rids.values())) == 3
    for line in lines(buf):
        assert line["name"] == line["who"]
        assert line["reconcileID"] == rids[str(line["who"])]


def test_parse_level_accepts_names_numbers_and_rejects_others() -> None:
    assert parse_level("DEBUG") == logging.DEBUG
    assert parse_level("warn") == logging.WARNING
    assert parse_level(5) == 5
    assert parse_level("5") == 5
    with pytest.raises(ValueError, match="unknown log level"):
        parse_level("verbose")


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        configure_logging("info", "xml")  # type: ignore[arg-type]
