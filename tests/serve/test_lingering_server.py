"""Stopping the server: what the app still holds (batched decision lines) is written before the process exits."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from webhook.certs import write_certificates
from webhook.core.config import parse_config
from webhook.serve.app import WebhookApp
from webhook.serve.decision_log import DecisionLog
from webhook.serve.server import ServeSettings, build_server

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def test_batched_decision_lines_are_written_when_the_server_stops(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhook.decisions")
    files = write_certificates(tmp_path, ["localhost"], ["127.0.0.1"])
    config = parse_config({"registry": REGISTRY, "tiers": ["quay"]})
    server, _ = build_server(config, ServeSettings(files.cert, files.key, host="127.0.0.1", port=0))
    app = server.app
    assert isinstance(app, WebhookApp)
    app.decision_log = DecisionLog(flush_seconds=3600)  # only the stop can write it in time

    async def serve_one_review_then_stop() -> tuple[bytes, bytes]:
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - `started` is a plain flag
            await asyncio.sleep(0.01)
        app.decision_log.write({"uid": "u1"}, ({"container": "c0", "action": "rewrite"},))
        await asyncio.sleep(0.1)
        pending = capsysbinary.readouterr().err
        server.should_exit = True
        await serving
        return pending, capsysbinary.readouterr().err

    pending, written = asyncio.run(serve_one_review_then_stop())
    assert b'"uid":"u1"' not in pending
    lines = [json.loads(line) for line in written.splitlines() if b'"msg":"decision"' in line]
    assert [(line["uid"], line["container"]) for line in lines] == [("u1", "c0")]
