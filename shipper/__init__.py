"""shipper: MLflow and Azure Machine Learning telemetry into the Elastic Stack."""

__version__ = "0.1.0"

__all__ = ["__version__"]
