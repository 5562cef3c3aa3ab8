"""Fixtures for end-to-end tests: the network-namespace test bed."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from testbed import TestBed, unavailable_reason


@pytest.fixture
def testbed() -> Iterator[Callable[..., TestBed]]:
    """A factory: `bed = testbed(3)` (or `testbed(2, names=["web-1", "api-1"])`) builds a
    started TestBed; every bed made is torn down after the test, pass or fail."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    beds: list[TestBed] = []

    def make(n_hosts: int, **kwargs: Any) -> TestBed:
        bed = TestBed(n_hosts, **kwargs)
        beds.append(bed)
        bed.start()
        return bed

    try:
        yield make
    finally:
        for bed in beds:
            bed.close()
