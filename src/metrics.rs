//! Prometheus metrics: requests by route, method, status and tenant, and a latency
//! histogram by route. Routes are the matched templates (`/v1/t/{tenant}/auth/login`),
//! and the tenant label is set only once a tenant was resolved, so label sets stay bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~13 s
    Histogram::new(exponential_buckets(0.0001, 2.5, 14))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvocationLabels {
    pub tenant: String,
    /// http | before | after
    pub trigger: String,
    /// ok | error | timeout | out_of_memory | internal_error
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    pub trigger: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    invocations: Family<InvocationLabels, Counter>,
    invocation_seconds: Family<TriggerLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("plinth");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "http_requests",
            "HTTP requests by route, method, status and tenant",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        let invocations = Family::<InvocationLabels, Counter>::default();
        let invocation_seconds =
            Family::<TriggerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "function_invocations",
            "Function invocations by tenant, trigger and outcome",
            invocations.clone(),
        );
        registry.register(
            "function_duration_seconds",
            "Function invocation wall time (queueing included) by trigger",
            invocation_seconds.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            invocations,
            invocation_seconds,
        }
    }

    pub fn invocation(&self, labels: InvocationLabels, seconds: f64) {
        self.invocation_seconds
            .get_or_create(&TriggerLabels {
                trigger: labels.trigger.clone(),
            })
            .observe(seconds);
        self.invocations.get_or_create(&labels).inc();
    }

    pub fn observe(&self, labels: RequestLabels, seconds: f64) {
        self.latency
            .get_or_create(&RouteLabels {
                method: labels.method.clone(),
                route: labels.route.clone(),
            })
            .observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
