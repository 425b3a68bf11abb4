"""Run a real Elasticsearch and a real MLflow tracking server on loopback, without Docker.

    scripts/stack up [--only es|mlflow|ingest] [--ingest]
                                               start, or reuse, and wait until healthy
    scripts/stack status [--only es|mlflow|ingest] [--ingest]
                                               pid, url, health and owner of each; exit 0 if all are
                                               ours and healthy, else 3
    scripts/stack down [--only es|mlflow|ingest] [--purge]
                                               stop what `up` started; --purge also deletes the data

`up` prints exactly these lines on stdout (everything else goes to stderr):

    ES_URL=http://127.0.0.1:<port>
    SHIPPER_ELASTICSEARCH_URL=http://127.0.0.1:<port>     (the same URL, for the shipper)
    MLFLOW_TRACKING_URI=http://127.0.0.1:<port>

so a shell can take them over with `export $(scripts/stack up)`.
With --ingest (or --only ingest) `up` also starts the ingest node and prints

    ES_INGEST_URL=http://127.0.0.1:<port>

an Elasticsearch 7.10.2 with its own ingest modules, used only to execute ingest pipelines (see
ingest_distribution()). `status` covers it when it runs, `down` always.

A URL is only printed once the server answering there is proven to be the one this script
started: for Elasticsearch a cluster name unique to the state dir and the node's pid (from
GET /_nodes/_local/process) in our process group, for MLflow the listening socket held by our
process group. If another server took the port first, `up` starts ours on another port (or fails
when the port is forced); `status` says whether the server at our URL is ours, someone else's, or
down.

This file uses only the Python standard library, because it runs before the project is
installed. It assumes Linux (it reads /proc to check that pids are the processes it started).

Elasticsearch
  The version comes from ELASTIC_STACK_VERSION in the repo-root .env file (the one place it is
  pinned); an ELASTIC_STACK_VERSION environment variable overrides it. The distribution is the
  Maven artifact org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>:zip,
  fetched once with `mvn dependency:copy` into ${XDG_CACHE_HOME:-~/.cache}/shipper-stack/ and
  unpacked there. That zip is the server without most modules: no painless, no ingest
  processors, no _reindex/_delete_by_query, no ILM, no /_data_stream API, and no `GET /` (the
  node version is at GET /_nodes/_local). It does ship x-pack-core and x-pack-security, see
  es_settings().
  It has no bundled JDK, so a JDK is picked from the machine (see pick_jdk()).
  Elasticsearch refuses to run as root. When this script runs as root (CI, containers) it runs
  Elasticsearch as an unprivileged system user, created with useradd on first use.

MLflow
  `<python> -m mlflow server` with a sqlite store and proxied artifacts under the state dir.

State (pid files, ports, logs, data) lives in <repo>/.stack/.

Environment variables
  ES_URL, MLFLOW_TRACKING_URI   already set: `up` starts nothing for that one, only checks that it
                                answers and prints it back (if it is the URL this script already
                                manages, it is treated as ours, so a stale export does not get
                                in the way after `down`)
  ELASTIC_STACK_VERSION         overrides the .env pin
  ES_JAVA_HOME                  JDK for Elasticsearch (default: newest suitable one found)
  ES_JAVA_OPTS                  JVM options (default: -Xms512m -Xmx512m)
  SHIPPER_STACK_ES_PORT         force the Elasticsearch HTTP port (default: 9200 if free)
  SHIPPER_STACK_MLFLOW_PORT     force the MLflow port (default: 5000 if free)
  SHIPPER_STACK_ES_TIMEOUT      seconds to wait for Elasticsearch to be healthy (default 180)
  SHIPPER_STACK_MLFLOW_TIMEOUT  seconds to wait for MLflow to be healthy (default 120)
  SHIPPER_STACK_PYTHON          interpreter that has mlflow (default: <repo>/.venv/bin/python,
                                else python3)
  SHIPPER_STACK_ES_USER         user to run Elasticsearch as when started by root
                                (default: shipper-stack)
  SHIPPER_STACK_STATE_DIR       state directory (default: <repo>/.stack)
  ES_INGEST_URL                 like ES_URL, for the ingest node
  SHIPPER_STACK_INGEST_PORT     force the ingest node's HTTP port (default: 9201 if free)
  SHIPPER_STACK_INGEST_TIMEOUT  seconds to wait for the ingest node to be healthy (default 180)
  SHIPPER_STACK_INGEST_JAVA_HOME  JDK 11..17 for the ingest node (default: newest found)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import sys
import time

from .common import StackError, log
from .component import (
    Component,
    Started,
    check_external,
    choose_port,
    fail_with_log,
    forget,
    server_owner,
    show_log_tail,
    try_reuse,
    wait_healthy,
)
from .elasticsearch import ES, es_version
from .ingest import INGEST, INGEST_VERSION
from .mlflow_server import ML
from .ports import port_free
from .processes import group_pids, rss_bytes, stop_group
from .state import STATE, rel, state_lock

EXIT_UNHEALTHY = 3  # `status` exit code when something is not healthy
COMPONENTS = {"es": ES, "mlflow": ML, "ingest": INGEST}


def cmd_up(targets: list[Component]) -> int:
    urls: dict[str, str] = {}
    with state_lock():
        # Servers started by this run and not yet seen healthy.
        pending: list[tuple[Component, Started, float]] = []
        moved: set[str] = set()  # components restarted on another port after losing theirs
        try:
            # Start everything first and only then wait, so ES and MLflow boot in parallel.
            for comp in targets:
                external = comp.external_url()
                if external:
                    check_external(comp, external)
                    urls[comp.key] = external
                    continue
                url = try_reuse(comp)
                if url:
                    urls[comp.key] = url
                    continue
                began = time.monotonic()
                pending.append((comp, comp.start(choose_port(comp)), began))

            failure: StackError | None = None
            while pending:
                comp, started, began = pending[0]
                url = f"http://127.0.0.1:{started.port}"
                log(
                    f"waiting for {comp.title} at {url} (up to {comp.timeout:.0f}s; log {rel(comp.log_file)})"
                )
                ok, detail = wait_healthy(comp, url, started.proc.pid, started.proc)
                pending.pop(0)
                if ok:
                    extra = f" {es_version(url)}" if comp is ES else ""
                    log(f"{comp.title}{extra} healthy after {time.monotonic() - began:.1f}s ({detail})")
                    urls[comp.key] = url
                    continue
                # Don't leave a half-started server behind; healthy ones stay up for the next `up`.
                if started.proc.poll() is None or group_pids(started.proc.pid):
                    stop_group(started.proc.pid, comp.grace, started.proc)
                forget(comp)
                if not port_free(started.port):
                    # Ours is gone, so another server holds the port: it took it between our
                    # check and our server's bind.
                    if os.environ.get(comp.port_var) or comp.key in moved:
                        detail += f"; 127.0.0.1:{started.port} is held by a server this stack did not start"
                    else:
                        show_log_tail(comp)
                        log(
                            f"{comp.title} did not come up on 127.0.0.1:{started.port}: {detail}. "
                            "A server this stack did not start holds that port; trying another one"
                        )
                        moved.add(comp.key)
                        pending.insert(0, (comp, comp.start(choose_port(comp, {started.port})), began))
                        continue
                err = fail_with_log(comp, f"did not come up: {detail}", started.hints)
                if failure is None:
                    failure = err
                else:
                    log(f"error: {err}")
            if failure is not None:
                raise failure
        except BaseException:
            # An error while starting the next component, or Ctrl-C while waiting: stop what this
            # run started and never saw healthy, instead of leaving it unverified in the background.
            for comp, started, _ in pending:
                log(f"stopping the {comp.title} this run started")
                if started.proc.poll() is None:
                    stop_group(started.proc.pid, comp.grace, started.proc)
                forget(comp)
            raise

    for comp in targets:
        print(f"{comp.url_var}={shlex.quote(urls[comp.key])}")
        if comp is ES:  # what the shipper reads, so `export $(scripts/stack up)` is all it needs
            print(f"SHIPPER_ELASTICSEARCH_URL={shlex.quote(urls[comp.key])}")
    return 0


def cmd_down(targets: list[Component], purge: bool) -> int:
    with state_lock():
        for comp in reversed(targets):
            pid = comp.owned_pid()
            if pid is None:
                stale = " (removed a stale pid file)" if comp.pid_file.exists() else ""
                log(f"{comp.title} is not running{stale}")
            else:
                log(f"stopping {comp.title} (process group {pid})")
                began = time.monotonic()
                stop_group(pid, comp.grace)
                log(f"{comp.title} stopped in {time.monotonic() - began:.1f}s")
            forget(comp)
            if purge:
                # Only paths this script creates: SHIPPER_STACK_STATE_DIR could point anywhere.
                for path in [
                    *comp.data_paths,
                    comp.port_file,
                    comp.log_file,
                    comp.log_file.with_suffix(".log.prev"),
                ]:
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink(missing_ok=True)
                log(f"{comp.title} data removed")
        if purge and len(targets) == len(COMPONENTS):
            (STATE / ".lock").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                STATE.rmdir()  # only if nothing else is left in it
    return 0


def cmd_status(targets: list[Component]) -> int:
    all_ok = True
    for comp in targets:
        external = comp.external_url()
        if external:
            if re.match(r"https?://", external):
                ok, detail = comp.health(external.rstrip("/"), direct=False)
            else:
                ok, detail = True, "not an http URL, not checked"
            print(
                f"{comp.title:<14} pid=-       url={external}  healthy={'yes' if ok else 'no'}  "
                f"server=external  (from ${comp.url_var}; {detail})"
            )
            all_ok &= ok
            continue
        pid = comp.owned_pid()
        url = comp.recorded_url()
        owner, ok, detail = server_owner(comp, pid, url)
        if ok and comp is ES:
            detail += f", version {es_version(url or '')}"
        rss = f", rss {rss_bytes(group_pids(pid)) / 2**20:.0f} MiB" if pid else ""
        print(
            f"{comp.title:<14} pid={pid or '-':<7} url={url or '-'}  healthy={'yes' if ok else 'no'}  "
            f"server={owner}  ({detail}{rss})"
        )
        all_ok &= ok
    return 0 if all_ok else EXIT_UNHEALTHY


def ingest_targets(args: argparse.Namespace) -> list[Component]:
    """The ingest node joins `up` with --ingest; `status` when asked or running; `down` always."""
    if args.only:
        return []
    if args.command == "down" or args.ingest:
        return [INGEST]
    if args.command == "status" and (INGEST.owned_pid() or INGEST.external_url()):
        return [INGEST]
    return []


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog="scripts/stack",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n", 1)[1],
    )
    only = argparse.ArgumentParser(add_help=False)
    only.add_argument("--only", choices=sorted(COMPONENTS), help="act on one component only")
    only.add_argument(
        "--ingest",
        action="store_true",
        help=f"also the Elasticsearch {INGEST_VERSION} ingest node (ES_INGEST_URL)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{up,down,status}")
    sub.add_parser("up", parents=[only], help="start (or reuse) and print ES_URL / MLFLOW_TRACKING_URI")
    down = sub.add_parser("down", parents=[only], help="stop what `up` started")
    down.add_argument("--purge", action="store_true", help="also delete data, logs and ports")
    sub.add_parser("status", parents=[only], help="pid, url, health; exit 0 if all healthy, else 3")
    args = parser.parse_args(argv)

    targets = [COMPONENTS[args.only]] if args.only else [ES, ML]
    targets += ingest_targets(args)
    try:
        if args.command == "up":
            return cmd_up(targets)
        if args.command == "down":
            return cmd_down(targets, args.purge)
        return cmd_status(targets)
    except StackError as err:
        print(f"stack: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
