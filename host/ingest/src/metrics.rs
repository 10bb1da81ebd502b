//! What ingest counts: events and bytes appended per topic, and events of deprecated types.
//! The server registers these families with its Prometheus registry and renders them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub tenant: String,
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventTypeLabels {
    pub tenant: String,
    pub event_type: String,
}

#[derive(Default)]
pub struct IngestMetrics {
    pub events_in: Family<TopicLabels, Counter>,
    pub bytes_in: Family<TopicLabels, Counter>,
    /// Events of a deprecated type in the event catalog, accepted with a warning.
    pub deprecated_events: Family<EventTypeLabels, Counter>,
}
