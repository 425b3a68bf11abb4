"""`shipper setup`: the Elasticsearch assets the shipper manages, and their installation."""
