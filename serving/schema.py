"""The served response models: the core ones from `models.schema`, plus whether it was cached."""

from pydantic import Field

from models.schema import BatchResponse, Prediction


class ServedPrediction(Prediction):
    cached: bool = Field(False, description="true when the answer came from the prediction cache")


class ServedBatchResponse(BatchResponse):
    predictions: list[ServedPrediction]
