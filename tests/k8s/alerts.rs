//! Alerts of the Kubernetes runtime, with the real API server: `run --alert-webhook` (the
//! binary, with leader election) fires `IpfsKitPeerDown` for a pod whose daemons do not answer:
//! a Warning `AlertFiring` Event, `status.alerts`, and a POST to the receiver; the status is not
//! rewritten while nothing changes; a new leader takes the firing alert over from the status
//! (no second notification) and, once real daemons answer at the pod's IP, resolves it: a Normal
//! `AlertResolved` Event and the resolved notification.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ipfs_kit_operator::api::IpfsCluster;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::support::clusters::{
    apply_cluster, cluster_json, event_note, provide_volumes, running_pods, stop_operator,
    wait_status,
};
use crate::support::control_plane::{ControlPlane, control_plane};
use crate::support::forward::forward;
use crate::support::ipfs::IpfsWorld;
use crate::support::process::log_tail;
use crate::support::webhook::Receiver;

/// `ipfs-kit-operator run` for namespace `ns` as `instance`, posting alerts to `hook`, every
/// alert's `for` 2 s.
fn operator(
    cp: &ControlPlane,
    ns: &str,
    instance: &str,
    hook: &str,
    log: &Path,
) -> std::process::Child {
    crate::support::clusters::operator_command(cp, ns, instance, "127.0.0.1:0", log)
        .args(["--alert-for", "all=2s"])
        .env("IPFS_KIT_ALERT_WEBHOOK", hook)
        .env("RUST_LOG", "info")
        .spawn()
        .expect("start ipfs-kit-operator run")
}

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

async fn alert_events(client: &kube::Client, ns: &str, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

fn peer_down_firing(c: &IpfsCluster) -> bool {
    c.status.as_ref().is_some_and(|s| {
        s.alerts.iter().any(|a| {
            a.name == "IpfsKitPeerDown" && a.peer.as_deref() == Some("alerts-0") && a.is_firing()
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_pod_fires_peer_down_as_event_status_and_webhook_and_a_new_leader_resolves_it() {
    let world = IpfsWorld::start(1).await;
    let cp = control_plane();
    cp.install_crds().await;
    let ns = cp.namespace("alerts").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 2).await;
    let receiver = Receiver::start().await;
    let logs = tempfile::tempdir().expect("tempdir");
    let (log_a, log_b) = (logs.path().join("a.log"), logs.path().join("b.log"));
    let mut first = operator(cp, &ns, "first", &receiver.url(), &log_a);

    let mut cluster = cluster_json("alerts", &class, 1);
    // Report only: the pod (and its IP, where the daemons will answer) stays.
    cluster["spec"]["health"]["autoHeal"] = json!(false);
    apply_cluster(&client, &ns, &cluster).await;
    let pod = running_pods(&client, &ns, "alerts", 1).await.remove(0);
    let ip = pod
        .status
        .and_then(|s| s.pod_ip)
        .expect("kwok gave the pod an IP");

    // Nothing answers at the pod's IP: the alert fires, in the status, as an Event, at the hook.
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    let fired = wait_status(
        &api,
        "alerts",
        "IpfsKitPeerDown firing in status.alerts",
        peer_down_firing,
    )
    .await;
    let status = fired.status.expect("status");
    let alert = status
        .alerts
        .iter()
        .find(|a| a.name == "IpfsKitPeerDown")
        .expect("the alert");
    assert_eq!(alert.severity.as_str(), "critical");
    let note = event_note(&client, &ns, "AlertFiring", "alerts-0").await;
    assert_eq!(note, alert.summary);
    let events = alert_events(&client, &ns, "AlertFiring").await;
    assert!(
        events.iter().all(|e| e.type_.as_deref() == Some("Warning")),
        "{events:?}"
    );
    let a_log = || log_tail(&log_a, 60);
    let (notification, posted) = receiver
        .wait_for(
            "IpfsKitPeerDown",
            "alerts-0",
            "firing",
            Duration::from_secs(30),
            a_log,
        )
        .await;
    assert_eq!(posted["labels"]["namespace"], ns.as_str());
    assert_eq!(posted["labels"]["cluster"], "alerts");
    assert_eq!(posted["annotations"]["summary"], alert.summary.as_str());
    assert_eq!(
        notification["groupKey"],
        format!("{{}}:{{cluster=\"alerts\",namespace=\"{ns}\"}}")
    );

    // Steady state: both alerts of a down one-peer cluster fired; rounds every 2 s change
    // nothing, so the status is not written again.
    let steady = wait_status(&api, "alerts", "IpfsKitClusterUnhealthy firing too", |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.alerts.iter().filter(|a| a.is_firing()).count() == 2)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let later = api.get("alerts").await.expect("get");
    assert_eq!(
        later.metadata.resource_version,
        steady.metadata.resource_version,
        "the object was rewritten while nothing changed: before {}\nafter {}",
        serde_json::to_string_pretty(&steady).unwrap_or_default(),
        serde_json::to_string_pretty(&later).unwrap_or_default(),
    );

    // One AlertFiring Event per alert, both fired now (IpfsKitClusterUnhealthy may fire after
    // the Events above were listed).
    let events = alert_events(&client, &ns, "AlertFiring").await;
    assert_eq!(events.len(), 2, "{events:?}");

    // A new leader takes over from status.alerts: no second notification, no second Event.
    assert!(stop_operator(&mut first).await.success(), "{}", a_log());
    let mut second = operator(cp, &ns, "second", &receiver.url(), &log_b);
    let b_log = || log_tail(&log_b, 60);
    crate::support::wait_for(
        "the second operator to lead and reconcile",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            std::fs::read_to_string(&log_b)
                .ok()?
                .contains("leading: starting the controller")
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        receiver
            .matching("IpfsKitPeerDown", "alerts-0", "firing")
            .len(),
        1,
        "the new leader fired it again:\n{}",
        b_log()
    );
    let after = alert_events(&client, &ns, "AlertFiring").await;
    assert_eq!(after.len(), events.len(), "a second Event: {after:?}");

    // Real daemons answer at the pod's IP: the new leader resolves what the first one fired.
    let peer = &world.peers[0];
    let mut forwarders = Vec::new();
    for (port, to) in [(5001, &peer.kubo_api), (9094, &peer.cluster_api)] {
        let listen: SocketAddr = format!("{ip}:{port}").parse().expect("address");
        forwarders.push(forward(listen, addr(to)).await);
    }
    let (_, resolved) = receiver
        .wait_for(
            "IpfsKitPeerDown",
            "alerts-0",
            "resolved",
            Duration::from_secs(60),
            b_log,
        )
        .await;
    assert_eq!(resolved["startsAt"], posted["startsAt"]);
    let note = event_note(&client, &ns, "AlertResolved", "alerts-0").await;
    assert_eq!(note, alert.summary);
    let resolved_events = alert_events(&client, &ns, "AlertResolved").await;
    assert!(
        resolved_events
            .iter()
            .all(|e| e.type_.as_deref() == Some("Normal")),
        "{resolved_events:?}"
    );
    wait_status(
        &api,
        "alerts",
        "IpfsKitPeerDown resolved in status.alerts",
        |c| {
            c.status.as_ref().is_some_and(|s| {
                s.alerts
                    .iter()
                    .any(|a| a.name == "IpfsKitPeerDown" && !a.is_firing() && a.ends_at.is_some())
            })
        },
    )
    .await;
    let output = std::fs::read_to_string(&log_b).unwrap_or_default();
    assert!(
        !output.contains("s3cr3t"),
        "the hook's path was logged:\n{output}"
    );
    assert!(stop_operator(&mut second).await.success(), "{}", b_log());
    drop(forwarders);
}
