"""HTTP requests to the servers, with the standard library only."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request

# A plain opener without proxies: an http_proxy in the environment must not capture requests to
# our own loopback servers. URLs the user hands us (ES_URL, ...) use the normal opener.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_DEFAULT = urllib.request.build_opener()


def fetch(
    url: str,
    *,
    method: str = "GET",
    body: object = None,
    timeout: float = 5.0,
    direct: bool = True,
    headers: dict[str, str] | None = None,
) -> tuple[int | None, str]:
    """One HTTP request -> (status, text); status None when nothing answered.

    Never raises for network trouble, because callers poll with it while servers boot.
    Credentials embedded in the URL (http://user:pw@host) become a Basic auth header, since
    urllib would otherwise ignore them.
    """
    parts = urllib.parse.urlsplit(url)
    hdrs = dict(headers or {})
    if parts.username is not None:
        cred = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        hdrs["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = host + (f":{parts.port}" if parts.port else "")
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with (_DIRECT if direct else _DEFAULT).open(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        return None, str(getattr(err, "reason", err))
