"""The local Kafka (KRaft, 1 or 3 nodes) and Apicurio registry runtime, from Maven Central jars."""
