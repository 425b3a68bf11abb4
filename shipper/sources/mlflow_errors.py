"""What went wrong when talking to an MLflow tracking server, said as a sentence with the fix.

Shared by both ways of reading it (`mlflow_rest`, the REST API read directly, and `mlflow_tracking`,
which also goes through the MLflow client), so that neither imports the other for its messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from shipper.errors import summarise_body


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def unreachable_message(uri: str, exc: BaseException, timeout: float) -> str:
    """Why one request to the tracking server got no HTTP answer, as a sentence with the fix."""
    text = " ".join(str(e) for e in _causes(exc))
    names = {type(e).__name__ for e in _causes(exc)}
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text or "packet length too long" in text:
        return (
            f"MLFLOW_TRACKING_URI={uri} asks for TLS (https), but the server at that address answers in "
            "plain HTTP; write it with http://, or put TLS in front of the server"
        )
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSLCertVerificationError" in names:
        return (
            f"the TLS certificate of the MLflow tracking server at {uri} is not trusted; set "
            "MLFLOW_TRACKING_SERVER_CERT_PATH to the PEM file of the CA that signed it"
        )
    if names & {"Timeout", "ReadTimeout", "ConnectTimeout", "ReadTimeoutError", "ConnectTimeoutError"} or (
        "timed out" in text
    ):
        return (
            f"the MLflow tracking server at {uri} did not answer within {timeout:g} s; check that it is "
            "up and that MLFLOW_TRACKING_URI is its address (SHIPPER_MLFLOW_CONNECT_TIMEOUT_SECONDS "
            "allows more time)"
        )
    if "Name or service not known" in text or "nodename nor servname" in text or "NameResolution" in text:
        host = urlsplit(uri).hostname
        return f"the host {host!r} of MLFLOW_TRACKING_URI={uri} is not known to DNS; check the name"
    if "Connection refused" in text or "ConnectionRefusedError" in names:
        return (
            f"cannot reach the MLflow tracking server at {uri}: nothing accepts connections there; "
            "start it (`mlflow server`) or correct MLFLOW_TRACKING_URI"
        )
    reason = str(exc).split(" failed with exception ", 1)[-1]
    return (
        f"cannot reach the MLflow tracking server at {uri} ({reason[:200]}); check that it is up and "
        "that MLFLOW_TRACKING_URI is its address"
    )


def refused_message(uri: str, status: int, body: bytes) -> str:
    """A non-200 answer to the first request, as a sentence with the fix."""
    said = summarise_body(body)
    if status in (401, 403):
        return (
            f"the MLflow tracking server at {uri} refused the credentials (HTTP {status}); set "
            "MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (for "
            "azureml://, sign in with `az login` or a managed identity)"
        )
    if said.startswith("an HTML page"):
        return (
            f"{uri} answered HTTP {status} with {said}, not the MLflow REST API; check that "
            "MLFLOW_TRACKING_URI is the tracking server's base URL (no path such as /#/experiments)"
        )
    return f"the MLflow tracking server at {uri} answered HTTP {status}: {said}; check MLFLOW_TRACKING_URI"
