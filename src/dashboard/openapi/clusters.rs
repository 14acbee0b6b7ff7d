//! The routes of a cluster's spec and IpfsPins in the OpenAPI document.

use serde_json::{Map, Value, json};

use super::{Schemas, error, ok, read_path, responses};
use crate::dashboard::clusters::{PinsView, SpecView, editable_list};

/// The path parameter naming a cluster.
fn cluster_parameter() -> Value {
    json!({
        "name": "cluster",
        "in": "path",
        "required": true,
        "description": "`<cluster>` locally, `<namespace>/<cluster>` in Kubernetes",
        "schema": {"type": "string", "example": "demo"},
    })
}

/// `GET` and `PATCH /api/dashboard/clusters/{cluster}/spec`, `GET .../pins`.
pub fn paths(s: &mut Schemas) -> Map<String, Value> {
    let spec_answer = s.answer::<SpecView>();
    let mut spec = read_path(
        "The cluster's whole spec (defaults filled in), its generation (also the ETag) and the \
         fields the dashboard may change, with their values, kinds and bounds",
        spec_answer.clone(),
        vec![
            ("404", error("Unknown cluster")),
            ("501", error("This dashboard has no access to the specs")),
            (
                "503",
                error("The spec could not be read now (the Kubernetes API did not answer)"),
            ),
        ],
    );
    let patch = json!({
        "summary": format!(
            "Change the safe fields of the spec: a JSON merge patch (RFC 7386) of {} only. In \
             Kubernetes a merge patch of the IpfsCluster through the API (the caller needs the \
             dashboard token, or with --kube-auth `patch` on that IpfsCluster); locally the \
             supervisor applies it as `local up -f` would. Every other field is refused (422) \
             naming it",
            editable_list()
        ),
        "security": [{"bearer": []}],
        "parameters": [cluster_parameter(), {
            "name": "If-Match",
            "in": "header",
            "required": false,
            "description": "The `generation` (ETag) of the spec the change was made on: \
                refused with 412 when the spec changed since",
            "schema": {"type": "string", "example": "\"3\""},
        }],
        "requestBody": {"required": true, "content": {
            "application/merge-patch+json": {"schema": {"type": "object", "example":
                {"replicas": 4, "health": {"autoHeal": false, "probeInterval": "30s"}}}},
            "application/json": {"schema": {"type": "object"}},
        }},
        "responses": responses([
            ("200", ok("Saved (`changed` lists the fields it changed; empty when none did)",
                spec_answer)),
            ("400", error("Malformed JSON or If-Match")),
            ("401", error("Missing or wrong bearer token")),
            ("403", error("No token configured, or RBAC does not allow the Kubernetes identity \
                to patch the IpfsCluster")),
            ("404", error("Unknown cluster")),
            ("412", error("The spec changed since the generation in If-Match")),
            ("415", error("Body not sent as JSON")),
            ("422", error("A read-only or unknown field, a wrong value, or a spec the API \
                server's rules refuse; the message names the field")),
            ("500", error("The Kubernetes API does not let the dashboard patch IpfsClusters \
                (its RBAC)")),
            ("501", error("This dashboard has no access to the specs")),
            ("503", error("The change could not be made now (API unreachable, supervisor \
                busy or stopped); nothing was changed")),
        ]),
    });
    spec["get"]["parameters"] = json!([cluster_parameter()]);
    spec["patch"] = patch;
    let mut pins = read_path(
        "The cluster's IpfsPins (Kubernetes) with their state on each peer; locally none \
         (`ipfsPins` false: pins are made through IPFS Cluster's API and counted per peer in \
         the status)",
        s.answer::<PinsView>(),
        vec![("404", error("Unknown cluster"))],
    );
    pins["get"]["parameters"] = json!([cluster_parameter()]);
    Map::from_iter([
        ("/api/dashboard/clusters/{cluster}/spec".to_owned(), spec),
        ("/api/dashboard/clusters/{cluster}/pins".to_owned(), pins),
    ])
}
