"""`fastlog mirror`: copies topics between Kafka-protocol clusters, as MirrorMaker 2 does
(`config.py` for its settings, `replicator.py` for the copying)."""
