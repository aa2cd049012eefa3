//! `/metrics`: requests by route, model and status; decision and upstream latency; the queue's
//! depth; batch sizes; upstream failures (OpenMetrics text, which Prometheus scrapes).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub model: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub model: String,
    pub reason: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    /// From a request's arrival to its ranking (queue and encoder included).
    pub decision_seconds: Histogram,
    /// From sending to an upstream to its response headers.
    pub upstream_seconds: Histograms<UpstreamLabels>,
    pub upstream_failures: Family<FailureLabels, Counter>,
    pub queue_depth: Gauge,
    pub batch_size: Histogram,
    /// Decision-log lines dropped because the writer fell behind.
    pub log_dropped: Counter,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 16 s.
    Histogram::new(exponential_buckets(0.00025, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("routerdc");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests by route, model and status", requests.clone());
        let decision_seconds = latency_histogram();
        registry.register("decision_seconds", "Time to a routing decision, queue included", decision_seconds.clone());
        let upstream_seconds =
            Histograms::<UpstreamLabels>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("upstream_seconds", "Time to an upstream's response headers", upstream_seconds.clone());
        let upstream_failures = Family::<FailureLabels, Counter>::default();
        registry.register("upstream_failures", "Upstream attempts that failed", upstream_failures.clone());
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Texts waiting for or in a decision", queue_depth.clone());
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        registry.register("batch_size", "Texts per encoder batch", batch_size.clone());
        let log_dropped = Counter::default();
        registry.register("decision_log_dropped", "Decision-log lines dropped", log_dropped.clone());
        Metrics {
            registry,
            requests,
            decision_seconds,
            upstream_seconds,
            upstream_failures,
            queue_depth,
            batch_size,
            log_dropped,
        }
    }

    pub fn request(&self, route: &str, model: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { route: route.into(), model: model.into(), status: status.to_string() })
            .inc();
    }

    pub fn upstream_failed(&self, model: &str, reason: &str) {
        self.upstream_failures.get_or_create(&FailureLabels { model: model.into(), reason: reason.into() }).inc();
    }

    /// The registry in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
