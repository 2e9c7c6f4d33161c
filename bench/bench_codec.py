"""Wire-codec throughput: a Produce request carrying 1 MB of record batches
(opaque bytes), a Metadata response with 1,000 partitions and a Fetch response
with 1,000 partitions that found no new records (a long poll's answer); and the
time to build each of them with the generated classes' keyword constructors, as
the broker's handlers do.

    python bench/bench_codec.py [--seconds 1.0]

Plain timing loop; prints a table.  No assertions on timings.
"""

from __future__ import annotations

import argparse
import time
import uuid

import fastlog.protocol as P


def produce_request(total=1 << 20, topics=4, partitions=16):
    per = total // (topics * partitions)
    batch = bytes(range(256)) * (per // 256)
    return P.ProduceRequest(acks=-1, timeout_ms=30000, topic_data=[
        P.ProduceRequest.TopicProduceData(name=f"topic-{t}", partition_data=[
            P.ProduceRequest.PartitionProduceData(index=p, records=batch)
            for p in range(partitions)])
        for t in range(topics)])


def metadata_response(partitions=1000, topics=10, brokers=3):
    per = partitions // topics
    M = P.MetadataResponse
    return M(throttle_time_ms=0, cluster_id="fastlog", controller_id=1,
             brokers=[M.MetadataResponseBroker(node_id=i, host=f"broker-{i}.local", port=9092, rack=None)
                      for i in range(brokers)],
             topics=[M.MetadataResponseTopic(
                 error_code=0, name=f"topic-{t}", topic_id=uuid.UUID(int=t + 1), is_internal=False,
                 partitions=[M.MetadataResponsePartition(
                     error_code=0, partition_index=p, leader_id=p % brokers, leader_epoch=5,
                     replica_nodes=[0, 1, 2], isr_nodes=[0, 1, 2], offline_replicas=[])
                     for p in range(per)])
                 for t in range(topics)])


def fetch_response(partitions=1000, topics=10):
    per = partitions // topics
    F = P.FetchResponse
    return F(throttle_time_ms=0, error_code=0, responses=[
        F.FetchableTopicResponse(topic=f"topic-{t}", topic_id=uuid.UUID(int=t + 1), partitions=[
            F.PartitionData(partition_index=p, high_watermark=1000, last_stable_offset=1000,
                            log_start_offset=0, aborted_transactions=None, records=b"")
            for p in range(per)])
        for t in range(topics)])


def rate(fn, seconds):
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if el >= seconds:
            return n / el, el / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    rows, builds = [], []
    cases = [
        ("Produce 1 MB (64 partitions)", P.ProduceRequest, produce_request, (3, 9, 11)),
        ("Metadata 1,000 partitions", P.MetadataResponse, metadata_response, (1, 9, 12)),
        ("Fetch 1,000 partitions, no records", P.FetchResponse, fetch_response, (4, 11, 12, 16)),
    ]
    for label, cls, build, versions in cases:
        builds.append((label, *rate(build, args.seconds)))
        obj = build()
        for v in versions:
            data = obj.encode(v)
            assert cls.decode(data, v).encode(v) == data  # sanity, not a timing check
            dec, dec_t = rate(lambda: cls.decode(data, v), args.seconds)
            w_parts = lambda: obj.encode_into(P.Writer(), v)  # noqa: E731
            enc_p, enc_p_t = rate(w_parts, args.seconds)
            enc, enc_t = rate(lambda: obj.encode(v), args.seconds)
            rows.append((f"{label} v{v}", len(data), dec, dec_t, enc_p, enc_p_t, enc, enc_t))
    hdr = f"{'case':36} {'bytes':>9} {'decode/s':>10} {'µs':>8} {'enc parts/s':>12} {'µs':>8} {'encode()/s':>11} {'µs':>8}"
    print(hdr)
    print("-" * len(hdr))
    for label, size, dec, dt, encp, ept, enc, et in rows:
        print(f"{label:36} {size:9d} {dec:10.0f} {dt * 1e6:8.1f} {encp:12.0f} {ept * 1e6:8.1f} {enc:11.0f} {et * 1e6:8.1f}")
    print()
    hdr = f"{'case, built with keyword constructors':40} {'built/s':>10} {'µs':>8}"
    print(hdr)
    print("-" * len(hdr))
    for label, per_s, per in builds:
        print(f"{label:40} {per_s:10.0f} {per * 1e6:8.1f}")


if __name__ == "__main__":
    main()
