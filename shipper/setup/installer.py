"""Install the managed assets idempotently.

For each asset: missing -> created; ours with an older version or a different content hash ->
replaced; ours and identical -> left alone; ours but newer than this shipper -> left alone with a
warning (an older shipper never downgrades); not ours -> reported as a conflict with the fix,
never overwritten. `@custom` component templates are created once and never touched again.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from elasticsearch import ApiError, Elasticsearch, NotFoundError

from shipper.errors import AssetConflictError
from shipper.setup.assets import ASSET_VERSION, MANAGED_BY, Asset, build_assets
from shipper.sink.client import Capabilities

log = logging.getLogger(__name__)

Action = Literal["create", "update", "unchanged", "skip-newer", "conflict"]


@dataclass(frozen=True)
class Change:
    asset: Asset
    action: Action
    detail: str = ""

    def describe(self) -> str:
        text = f"{self.action:<10} {self.asset.kind} {self.asset.name}"
        return f"{text}: {self.detail}" if self.detail else text


def content_hash(body: dict[str, Any]) -> str:
    clean = copy.deepcopy(body)
    clean.get("_meta", {}).pop("hash", None)
    return hashlib.sha256(orjson.dumps(clean, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _stamped(asset: Asset) -> dict[str, Any]:
    body = copy.deepcopy(asset.body)
    if not asset.user_owned:
        body.setdefault("_meta", {})["hash"] = content_hash(asset.body)
    return body


def _fetch(client: Elasticsearch, asset: Asset) -> dict[str, Any] | None:
    try:
        if asset.kind == "component_template":
            found = client.cluster.get_component_template(name=asset.name)
            return dict(found["component_templates"][0]["component_template"])
        if asset.kind == "index_template":
            found = client.indices.get_index_template(name=asset.name)
            return dict(found["index_templates"][0]["index_template"])
        if asset.kind == "ingest_pipeline":
            found = client.ingest.get_pipeline(id=asset.name)
            return dict(found[asset.name])
        found = client.ilm.get_lifecycle(name=asset.name)
        return dict(found[asset.name]["policy"])
    except NotFoundError:
        return None


def _put(client: Elasticsearch, asset: Asset, body: dict[str, Any]) -> None:
    if asset.kind == "component_template":
        client.cluster.put_component_template(name=asset.name, **body)
    elif asset.kind == "index_template":
        client.indices.put_index_template(name=asset.name, **body)
    elif asset.kind == "ingest_pipeline":
        client.ingest.put_pipeline(id=asset.name, **body)
    else:
        client.ilm.put_lifecycle(name=asset.name, policy=body)


def _stored_version(existing: dict[str, Any]) -> int:
    meta = existing.get("_meta") or {}
    return int(existing.get("version") or meta.get("version") or 0)


def plan(client: Elasticsearch, assets: list[Asset]) -> list[Change]:
    changes: list[Change] = []
    for asset in assets:
        existing = _fetch(client, asset)
        if existing is None:
            changes.append(Change(asset, "create"))
            continue
        if asset.user_owned:
            changes.append(Change(asset, "unchanged", "yours; never modified"))
            continue
        meta = existing.get("_meta") or {}
        if meta.get("managed_by") != MANAGED_BY:
            changes.append(
                Change(
                    asset,
                    "conflict",
                    f"a {asset.kind.replace('_', ' ')} named {asset.name!r} exists and was not made by the "
                    "shipper; rename or delete it (its settings can move to the @custom component "
                    "template), then run `shipper setup` again",
                )
            )
            continue
        stored = _stored_version(existing)
        if stored > ASSET_VERSION:
            changes.append(
                Change(
                    asset, "skip-newer", f"version {stored} installed by a newer shipper; upgrade this one"
                )
            )
        elif stored < ASSET_VERSION:
            changes.append(Change(asset, "update", f"version {stored} -> {ASSET_VERSION}"))
        elif meta.get("hash") != content_hash(asset.body):
            changes.append(Change(asset, "update", "changed by hand since it was installed; restoring"))
        else:
            changes.append(Change(asset, "unchanged"))
    return changes


def install(
    client: Elasticsearch,
    capabilities: Capabilities,
    retention_days: int,
    logs_retention_days: int,
    dry_run: bool = False,
) -> list[Change]:
    """Plan, and unless `dry_run`, apply. Conflicts stop the installation before anything changes."""
    scoring = _scoring_module()
    ingest = scoring_ingest_supported(capabilities, scoring)
    assets = build_assets(
        retention_days, logs_retention_days, capabilities.ilm, scoring=scoring, ingest=ingest
    )
    changes = plan(client, assets)
    conflicts = [c for c in changes if c.action == "conflict"]
    if conflicts:
        raise AssetConflictError("\n".join(c.describe() for c in conflicts))
    if dry_run:
        return changes
    for change in changes:
        if change.action in ("create", "update"):
            try:
                _put(client, change.asset, _stamped(change.asset))
            except ApiError as exc:
                raise AssetConflictError(
                    f"Elasticsearch refused {change.asset.kind} {change.asset.name}: {exc.message} "
                    f"({_reason(exc)}); if another index template matches the same indices with the "
                    "same priority, lower its priority or narrow its index_patterns"
                ) from None
            log.info("%s", change.describe())
            if change.asset.applies_to:
                _update_existing_mappings(client, change.asset)
    return changes


def request_body(asset: Asset) -> dict[str, Any]:
    """The exact JSON body `install` sends for an asset (its PUT request)."""
    body = _stamped(asset)
    return {"policy": body} if asset.kind == "ilm_policy" else body


def export(
    capabilities: Capabilities, retention_days: int, logs_retention_days: int, directory: Path
) -> list[Path]:
    """Write the request body of every asset `install` manages on this cluster to
    `directory/<kind>/<name>.json` (for review, or GitOps); changes nothing in Elasticsearch.

    What is written depends on the cluster's capabilities, as `install` does: ILM policies only with
    ILM, the scoring pipelines and `default_pipeline` only where the cluster can run them. `@custom`
    assets are written as `install` creates them the first time (empty)."""
    scoring = _scoring_module()
    ingest = scoring_ingest_supported(capabilities, scoring)
    assets = build_assets(
        retention_days, logs_retention_days, capabilities.ilm, scoring=scoring, ingest=ingest
    )
    written: list[Path] = []
    for asset in assets:
        path = directory / asset.kind / f"{asset.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            orjson.dumps(request_body(asset), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
        written.append(path)
    return written


def scoring_ingest_supported(capabilities: Capabilities, scoring: Any) -> bool:
    """Whether the cluster can run the scoring pipeline; says which scoring-log path it supports."""
    missing = capabilities.lacks_processors(scoring.required_processors())
    if missing:
        log.warning(
            "scoring logs: Logstash path only. The data stream %s (templates, mappings, lifecycle) is "
            "installed, but no ingest node of this cluster has the processors %s (modules ingest-common "
            "and lang-painless, on a node with the ingest role), so the scoring pipeline and the "
            "template's default_pipeline are not: send scoring logs through Logstash (logstash/), which "
            "parses them and writes into the same data stream. Run `shipper setup` again once the "
            "cluster has them, and Filebeat can write there directly.",
            scoring.SCORING_INDEX_PATTERN,
            ", ".join(sorted(missing)),
        )
        return False
    log.info(
        "scoring logs: both paths. %s runs the scoring pipeline as its default pipeline, so Filebeat "
        "can write there directly; events Logstash parsed pass through unchanged.",
        scoring.SCORING_INDEX_PATTERN,
    )
    return True


def _update_existing_mappings(client: Elasticsearch, asset: Asset) -> None:
    """Give indices that already exist the new mappings (new fields, new dynamic templates)."""
    mappings = asset.body["template"]["mappings"]
    for pattern in asset.applies_to:
        try:
            client.indices.put_mapping(
                index=pattern,
                allow_no_indices=True,
                ignore_unavailable=True,
                expand_wildcards="open",
                **mappings,
            )
        except ApiError as exc:
            raise AssetConflictError(
                f"the existing indices {pattern} cannot take the new mappings of {asset.name}: "
                f"{_reason(exc)}; the template is updated, so new indices get them. Reindex the old "
                "ones into new names (or, for monthly partitions, let them age out)"
            ) from None


def _reason(exc: ApiError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", {})
    if isinstance(error, dict):
        return str(error.get("reason", error))
    return str(error)


def processor_types(body: Any) -> set[str]:
    """Every processor type a pipeline body uses, nested ones (on_failure, foreach) included."""
    found: set[str] = set()
    if isinstance(body, dict):
        for key in ("processors", "on_failure"):
            for processor in body.get(key) or []:
                for kind, config in processor.items():
                    found.add(kind)
                    found |= processor_types(config)
                    if kind == "foreach" and isinstance(config, dict):
                        found |= processor_types({"processors": [config.get("processor", {})]})
    return found


def _scoring_module() -> Any:
    """The scoring-log pipeline and mappings, built from the shared grok patterns."""
    from shipper.assets.scoring import pipeline

    return pipeline
