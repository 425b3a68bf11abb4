"""End-to-end tests: the official Elastic images in Docker (tests/support/docker_stack.py).

`SHIPPER_TEST_BACKEND` decides, read once when this directory is collected:
- unset or `local` (the default): the tests are collected and skipped, all with one reason;
- `auto`: they run when a Docker engine answers, else they are skipped with that one reason;
- `docker`: they run, and without a Docker engine every one of them fails, saying why.
Every test here is marked `docker` and depends on the `docker_backend` fixture, which applies the
decision once per session (pytest keeps a session fixture's skip or failure for every later test,
so the reason is reported once, in one line of the summary).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support.docker_stack import (
    BACKEND_ENV,
    LOG_DIR,
    Decision,
    E2EStack,
    build_scoring_image,
    decide,
    docker_problem,
    start_stack,
)

#: Read at collection: the autouse fixture of tests/conftest.py hides SHIPPER_* from each test.
REQUESTED = os.environ.get(BACKEND_ENV)
#: (path, line, reason) of the session's skip, once it happened.
_skipped: list[tuple[str, int, str]] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.docker)
            if "docker_backend" not in getattr(item, "fixturenames", ()):
                raise pytest.UsageError(f"{item.nodeid}: every e2e test must use the docker_backend fixture")


@pytest.fixture(scope="session")
def docker_backend() -> Decision:
    decision = decide(REQUESTED, docker_problem)
    if decision.action == "fail":
        pytest.fail(decision.reason, pytrace=False)
    if decision.action == "skip":
        frame = inspect.currentframe()
        _skipped.append((__file__, frame.f_lineno + 1 if frame else 0, decision.reason))
        pytest.skip(decision.reason)
    return decision


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Report the session's one skip at one place, so `-ra` prints its reason once for all tests
    here (pytest would otherwise give each test its own line with the same reason)."""
    report: pytest.TestReport = yield
    if _skipped and report.skipped and isinstance(report.longrepr, tuple):
        path, line, reason = _skipped[0]
        if report.longrepr[2].endswith(reason):
            report.longrepr = (os.path.relpath(path, item.config.rootpath), line, reason)
    return report


@pytest.fixture(scope="session")
def e2e(docker_backend: Decision, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    """Elasticsearch, Kibana, Logstash and two Filebeats, up and answering."""
    stack = start_stack(tmp_path_factory.mktemp("e2e"))
    try:
        yield stack
    finally:
        if LOG_DIR is not None:
            stack.save_logs(LOG_DIR)
        stack.stop()


@pytest.fixture(scope="session")
def scoring_image(docker_backend: Decision) -> None:
    build_scoring_image()
