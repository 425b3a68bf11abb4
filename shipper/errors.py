"""The shipper's exceptions.

    ShipperError                 base of everything the shipper raises on purpose
    ├── ConfigError              settings are wrong; lists every problem with its fix (exit 2)
    ├── ConnectivityError        Elasticsearch or MLflow cannot be reached or refuses us (exit 3)
    ├── AssetConflictError       something not managed by the shipper is in the way of `setup` (exit 4)
    └── WriteError               Elasticsearch would not take a batch after all retries (exit 5);
                                 checkpoints did not move, so the next pass repeats the work

Every message says what failed, the value involved, and what to do about it.
"""

from __future__ import annotations


class ShipperError(Exception):
    exit_code = 1


class ConfigError(ShipperError):
    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class ConnectivityError(ShipperError):
    exit_code = 3


class AssetConflictError(ShipperError):
    exit_code = 4


class WriteError(ShipperError):
    exit_code = 5


class KibanaImportError(ShipperError):
    """Kibana answered an import of saved objects but refused some or all of them (exit 6). The
    message lists each object that failed, why, and the fix."""

    exit_code = 6


def summarise_body(body: object, limit: int = 200) -> str:
    """What a server answered, in a few words: an HTML page by its title, anything else by its
    first characters on one line. Error pages of proxies and web servers are summarised, not dumped."""
    import html
    import re

    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    stripped = text.lstrip()
    if stripped[:15].lower().startswith(("<!doctype html", "<html")) or "<body" in text[:2000].lower():
        found = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        title = " ".join(html.unescape(found.group(1)).split())[:120] if found else ""
        return f"an HTML page titled {title!r}" if title else "an HTML page"
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))
