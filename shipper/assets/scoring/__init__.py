"""Scoring-script logs: grok patterns (``patterns.grok``), ingest pipeline and mappings."""

from shipper.assets.scoring.pipeline import (
    SCORING_INDEX_PATTERN,
    SCORING_PIPELINE_ID,
    scoring_mappings,
    scoring_pipeline,
)

__all__ = ["SCORING_INDEX_PATTERN", "SCORING_PIPELINE_ID", "scoring_mappings", "scoring_pipeline"]
