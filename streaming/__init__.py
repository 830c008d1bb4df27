"""A Kafka bridge that scores customer events through the churn bento."""
