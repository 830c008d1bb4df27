"""Batch inference over parquet files with the packaged churn model."""
