"""The Kibana saved objects `shipper setup --kibana` imports (built by scripts/kibana-build)."""
