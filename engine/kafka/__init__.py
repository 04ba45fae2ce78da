"""The Kafka runtime: the same reconcilers and executors as the embedded runtime, run by
faust-streaming workers on Apache Kafka, with tenants spread over partitions."""
