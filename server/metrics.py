"""Prometheus metrics of the server (prometheus-client), one registry per app so apps never collide.

Requests and tokens are labelled by mode (short | long | auto | model) and by the model that answered;
latency histograms cover the whole request and the time to the first streamed token; a gauge shows
how many sequences wait for a batch and how many requests are admitted.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds; a pico model answers in tens of ms, a real one on CPU in tens of seconds.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "l2s_requests",
            "Requests answered, by endpoint, mode and status",
            ["endpoint", "mode", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "l2s_tokens",
            "Tokens by mode, answering model and kind (prompt | completion | reasoning)",
            ["mode", "model", "kind"],
            registry=r,
        )
        self.escalations = Counter(
            "l2s_auto_escalations", "auto requests answered by the long model", registry=r
        )
        self.latency = Histogram(
            "l2s_request_latency_seconds",
            "Whole-request latency by mode",
            ["mode"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "l2s_time_to_first_token_seconds",
            "Time to the first streamed token by mode",
            ["mode"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "l2s_queue_depth", "Sequences waiting for a generate batch, by model", ["model"], registry=r
        )
        self.in_flight = Gauge("l2s_requests_in_flight", "Requests admitted and not yet answered", registry=r)
        self.rejected = Counter(
            "l2s_requests_rejected", "Requests turned away with 429 (overload)", registry=r
        )

    def count_tokens(self, mode: str, model: str, prompt: int, completion: int, reasoning: int) -> None:
        self.tokens.labels(mode, model, "prompt").inc(prompt)
        self.tokens.labels(mode, model, "completion").inc(completion)
        self.tokens.labels(mode, model, "reasoning").inc(reasoning)

    def render(self) -> bytes:
        return generate_latest(self.registry)
