"""The one Elasticsearch sink: client construction, bulk writing with retries and dead letters."""
