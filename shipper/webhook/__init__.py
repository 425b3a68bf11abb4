"""The Event Grid webhook (`shipper serve`): HTTP surface (`app`), delivery handling (`service`),
authentication (`auth`), notifications (`notify`), the MLflow sync trigger (`sync_trigger`), its
metrics (`metrics`) and the wiring (`server`)."""
