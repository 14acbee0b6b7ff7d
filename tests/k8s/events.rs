//! Events as `kubectl describe` shows them: a repeat of the same message about the same object
//! is one Event whose series counts the repeats; a new message is a new Event, so the latest one
//! is what is shown (kube's `Recorder` would fold it into the first Event and keep the old
//! message).

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::{Resource, ResourceExt};

use crate::support::control_plane::control_plane;
use ipfs_kit_operator::runtime::kube::events::{EventType, Events};

/// The Events about `object`, oldest first: (note, series count).
async fn events_about(client: &kube::Client, ns: &str, object: &ConfigMap) -> Vec<(String, i32)> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let uid = object.uid().expect("uid");
    let mut about: Vec<Event> = api
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid.as_str()))
        .collect();
    about.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    about
        .into_iter()
        .map(|e| {
            assert_eq!(e.reporting_controller.as_deref(), Some("ipfs-kit-operator"));
            assert_eq!(e.reporting_instance.as_deref(), Some("events-test"));
            assert_eq!(e.type_.as_deref(), Some("Normal"));
            (e.note.unwrap_or_default(), e.series.map_or(1, |s| s.count))
        })
        .collect()
}

/// Publishes an `Applied` Event about `object` with this note.
async fn applied(events: &Events, object: &ConfigMap, note: &str) {
    events
        .publish(object, EventType::Normal, "Applied", note.to_owned())
        .await;
}

#[tokio::test]
async fn a_repeated_message_counts_in_one_event_and_a_new_message_is_a_new_event() {
    let cp = control_plane();
    let ns = cp.namespace("events").await;
    let client = cp.admin_client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut object = ConfigMap::default();
    object.meta_mut().name = Some("regarded".into());
    let object = cms
        .create(&PostParams::default(), &object)
        .await
        .expect("create the ConfigMap");
    let events = Events::new(&client, "events-test");

    for _ in 0..3 {
        applied(&events, &object, "applied generation 1").await;
    }
    assert_eq!(
        events_about(&client, &ns, &object).await,
        vec![("applied generation 1".to_owned(), 3)]
    );

    applied(&events, &object, "applied generation 2").await;
    assert_eq!(
        events_about(&client, &ns, &object).await,
        vec![
            ("applied generation 1".to_owned(), 3),
            ("applied generation 2".to_owned(), 1)
        ]
    );
    // One object and reason remembered: the latest Event, not every one.
    assert_eq!(events.remembered(), 1);

    // The remembered Event deleted (say, its time to live ran out): a repeat makes a new one.
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    api.delete_collection(&Default::default(), &ListParams::default())
        .await
        .expect("delete the Events");
    applied(&events, &object, "applied generation 2").await;
    assert_eq!(
        events_about(&client, &ns, &object).await,
        vec![("applied generation 2".to_owned(), 1)]
    );
}
