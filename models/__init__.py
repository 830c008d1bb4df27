"""The churn model: its contract, validation, features, scoring, training and packaging."""
