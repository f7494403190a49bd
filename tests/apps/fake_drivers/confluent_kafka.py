"""A stand-in for confluent_kafka (see README): loaded under its name."""
