"""The code behind `scripts/stack`: a real Elasticsearch, MLflow and ingest node on loopback.

Standard library only, because it runs before the project is installed. The modules import one
way: `cli` (the command line) -> the components (`elasticsearch`, `mlflow_server`, `ingest`,
built on `component`) -> the tools they use (`processes`, `ports`, `identity`, `jdk`, `fetch`,
`maven`) -> `state` (directories, lock, files) -> `common` (the error type and the log).
"""
