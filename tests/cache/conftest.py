"""Fixtures the verify suites share."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.stub import Stubber

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_ecr import ECRClient


@pytest.fixture
def ecr() -> Iterator[tuple[ECRClient, Stubber]]:
    """An ECR client whose every call is checked against the real service model, and its stubber."""
    client = boto3.client("ecr", region_name="eu-west-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()
