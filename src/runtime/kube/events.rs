//! Publishes Events (`events.k8s.io/v1`). A repeat of the same note about the same object and
//! reason within [`SERIES_WINDOW`] is folded into the first Event's series (`kubectl describe`
//! shows `(x3)`); a new note starts a new Event, so the latest message is the one shown. kube's
//! `Recorder` folds every repeat of a reason, whatever its note, into an Event that keeps the
//! first note (`Applied (x3) ... generation 1` after generation 2 was applied).
//!
//! What is remembered per object and reason is small (the note's hash, the Event's name, the
//! series count): a few hundred bytes, where a `Recorder` per object kept whole Event objects
//! (about 16 KiB per cluster, 16 MiB for 1000 clusters that each published one).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use tracing::warn;

use super::applied::body_hash;

pub use kube::runtime::events::EventType;

/// The controller name Events are reported by (`reportingController`).
const CONTROLLER: &str = "ipfs-kit-operator";
/// Objects x reasons remembered before the memory is dropped (then every next Event is new).
const KEYS_MAX: usize = 10_000;
/// How long a repeat is folded into an Event's series: a repeat after longer is a new Event.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// How often [`Events::sweep`] forgets the Events published longer than [`SERIES_WINDOW`] ago.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// The longest note the API server takes (bytes).
const NOTE_MAX: usize = 1024;

/// An object (`kind/namespace/uid`) and an Event reason.
type Key = (String, String);

/// The Event last published for one object and reason.
#[derive(Debug)]
struct Published {
    /// Hash of its note.
    note: u64,
    /// Its name and namespace.
    name: String,
    namespace: String,
    /// Times published (the series count).
    count: i32,
    /// When it was last published.
    at: Instant,
}

/// Publishes Events for one controller instance (see the module's documentation).
pub struct Events {
    client: Client,
    /// This instance's name (`reportingInstance`), e.g. the pod name.
    instance: String,
    last: Mutex<HashMap<Key, Published>>,
    /// When [`Events::sweep`] next forgets old Events.
    next_sweep: Mutex<Instant>,
}

/// What a publish does: a new Event, or one more of an Event's series.
enum Step {
    Create,
    Repeat {
        name: String,
        namespace: String,
        count: i32,
    },
}

impl Events {
    pub fn new(client: &Client, instance: &str) -> Events {
        Events {
            client: client.clone(),
            instance: instance.to_owned(),
            last: Mutex::new(HashMap::new()),
            next_sweep: Mutex::new(Instant::now() + SWEEP_EVERY),
        }
    }

    /// Forgets the Events published longer than [`SERIES_WINDOW`] ago (at most once per
    /// [`SWEEP_EVERY`]; cheap otherwise), so that idle clusters hold no Event memory.
    pub fn sweep(&self) {
        {
            let mut next = self.next_sweep.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if now < *next {
                return;
            }
            *next = now + SWEEP_EVERY;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.retain(|_, p| p.at.elapsed() < SERIES_WINDOW);
        last.shrink_to_fit();
    }

    /// How many object x reason pairs are remembered (for tests of the memory's bounds).
    pub fn remembered(&self) -> usize {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Publishes an Event about `object` (its `action` is its `reason`); a failure is only
    /// logged.
    pub async fn publish<K>(&self, object: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let note = event_note(note);
        let reference = object.object_ref(&());
        let key = (
            format!(
                "{}/{}/{}",
                reference.kind.as_deref().unwrap_or_default(),
                reference.namespace.as_deref().unwrap_or_default(),
                reference.uid.as_deref().unwrap_or_default()
            ),
            reason.to_owned(),
        );
        let note_hash = body_hash(&note);
        let step = self.step(&key, note_hash);
        let result = match step {
            Step::Repeat {
                name,
                namespace,
                count,
            } => match self.repeat(&name, &namespace, count).await {
                // Gone (its time to live is over, or deleted): a new Event.
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    self.create(&reference, type_, reason, &note).await
                }
                other => other.map(|()| (name, namespace, count)),
            },
            Step::Create => self.create(&reference, type_, reason, &note).await,
        };
        match result {
            Ok((name, namespace, count)) => {
                let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
                if last.len() >= KEYS_MAX && !last.contains_key(&key) {
                    last.clear();
                }
                last.insert(
                    key,
                    Published {
                        note: note_hash,
                        name,
                        namespace,
                        count,
                        at: Instant::now(),
                    },
                );
            }
            Err(e) => {
                let object = reference.name.as_deref().unwrap_or_default();
                warn!(object, reason, "publishing an Event failed: {e}");
            }
        }
    }

    /// Whether the Event for `key` with this note is a repeat of the last one.
    fn step(&self, key: &Key, note: u64) -> Step {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(key) {
            Some(p) if p.note == note && p.at.elapsed() < SERIES_WINDOW => Step::Repeat {
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                count: p.count.saturating_add(1),
            },
            _ => Step::Create,
        }
    }

    /// Creates a new Event; its name, namespace and count (1).
    async fn create(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> Result<(String, String, i32), kube::Error> {
        let now = Timestamp::now();
        let namespace = regarding.namespace.clone().unwrap_or("default".into());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(CONTROLLER),
            now.as_nanosecond()
        );
        let event = K8sEvent {
            action: Some(reason.to_owned()),
            reason: Some(reason.to_owned()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            note: Some(note.to_owned()),
            metadata: ObjectMeta {
                namespace: Some(namespace.clone()),
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            reporting_controller: Some(CONTROLLER.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            ..K8sEvent::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &event).await?;
        Ok((name, namespace, 1))
    }

    /// Counts one more of Event `name`'s series (a merge patch of its `series` alone).
    async fn repeat(&self, name: &str, namespace: &str, count: i32) -> Result<(), kube::Error> {
        let patch = K8sEvent {
            series: Some(EventSeries {
                count,
                last_observed_time: MicroTime(Timestamp::now()),
            }),
            ..K8sEvent::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }
}

/// `note` cut to what the API server takes ([`NOTE_MAX`] bytes), ending in `…` when cut.
fn event_note(mut note: String) -> String {
    if note.len() <= NOTE_MAX {
        return note;
    }
    let mut end = NOTE_MAX - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push('…');
    note
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_notes_are_cut_to_what_the_api_server_takes() {
        assert_eq!(super::event_note("short".into()), "short");
        let long = "é".repeat(700);
        let cut = super::event_note(long.clone());
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(long.starts_with(cut.trim_end_matches('…')));
    }
}
