"""Azure Machine Learning as a source: Event Grid deliveries (`events`), job details through
azure-ai-ml (`jobs`, `enrich`) and the reconcile pass that catches runs whose events never came
(`reconcile`). Everything that talks to Azure sits behind the `jobs.JobsClient` interface."""
