"""MLflow -> Elasticsearch synchronisation: passes, checkpoints, and the polling loop."""
