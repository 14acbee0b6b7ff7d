//! `ipfs_kit_alert_notifications_total{outcome}`: what became of the notifications for
//! `--alert-webhook` (delivered, failed after its attempts or refused, dropped from a full
//! queue), read from the sender's own counts at each scrape.

use std::fmt;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use crate::alerts::Webhook;

/// The webhook sender whose counts are exported, once one is started.
#[derive(Clone, Default)]
pub struct WebhookCounts {
    sender: Arc<Mutex<Option<Webhook>>>,
}

impl WebhookCounts {
    /// Exports the counts of `sender` from now on.
    pub fn watch(&self, sender: Webhook) {
        if let Ok(mut slot) = self.sender.lock() {
            *slot = Some(sender);
        }
    }
}

impl fmt::Debug for WebhookCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookCounts")
    }
}

impl Collector for WebhookCounts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Some(sender) = self.sender.lock().ok().and_then(|s| s.clone()) else {
            return Ok(());
        };
        let mut family = encoder.encode_descriptor(
            "alert_notifications",
            "Notifications for --alert-webhook by outcome: delivered, failed (refused, or every \
             attempt failed), dropped (the queue was full).",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (outcome, count) in [
            ("delivered", sender.delivered_total()),
            ("failed", sender.failed_total()),
            ("dropped", sender.dropped_total()),
        ] {
            let labels = [("outcome", outcome)];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
