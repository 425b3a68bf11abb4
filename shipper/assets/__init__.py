"""Elasticsearch assets that `shipper setup` installs (pipelines, mappings, templates)."""
