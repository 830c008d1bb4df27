"""The Kafka bridge: message handling, and the bridge against a real broker and a served bento."""
