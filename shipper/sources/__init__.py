"""Where telemetry comes from: the MLflow tracking server (polled) and Azure ML (events)."""
