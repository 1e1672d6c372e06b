"""Observing many values at once counts them exactly as observing each one does."""

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streamml.common.metrics import observe_all

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 1, 10)
VALUES = [0.0, 0.004, 0.005, 0.0051, 0.01, 0.3, 0.3, 1.0, 9.99, 10.0, 11.0, 1e9]


def exposition(observe) -> list[bytes]:
    """The text a scrape reads, less the `_created` sample, whose time differs between registries."""
    registry = CollectorRegistry()
    histogram = Histogram("latency_seconds", "test", ["service"], buckets=BUCKETS, registry=registry)
    observe(histogram.labels("inference"))
    return [line for line in generate_latest(registry).splitlines() if b"_created" not in line]


def test_observe_all_matches_one_at_a_time():
    def one_at_a_time(child):
        for value in VALUES:
            child.observe(value)

    assert exposition(lambda child: observe_all(child, VALUES)) == exposition(one_at_a_time)


def test_observe_all_of_nothing_changes_nothing():
    assert exposition(lambda child: observe_all(child, [])) == exposition(lambda child: None)
