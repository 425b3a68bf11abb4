"""Pure transforms: MLflow records and Azure ML events into the documents the shipper writes."""
