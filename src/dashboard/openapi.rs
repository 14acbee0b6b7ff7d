//! The OpenAPI 3.1 document of the dashboard, served at `/openapi.json`: the routes are written
//! here, every body schema is generated from the types in `views` (schemars), so the document
//! cannot drift from what the handlers answer. The generated document is checked in as
//! `openapi.json` (served as is); a unit test fails when it is stale. Regenerate it with
//! `scripts/gen-openapi.sh`.

mod clusters;

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use super::routes::{DEFAULT_LOG_LINES, HEALTH_CHECK_WAIT};
use super::views::{
    Accepted, BackendStatus, ClusterAction, ClusterActionRead, DaemonAction, DaemonStatusRead,
    ErrorBody, HealthCheck, HealthCheckView, HistoryView, LogsView, RealtimeView, StatusEvent,
    StatusView,
};
use super::{BODY_LIMIT, MAX_LOG_LINES};
use crate::history::{DEFAULT_POINTS, MAX_POINTS};

mod check;

pub use check::{answer_schema, undeclared_fields};

/// The checked-in document, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The document as `openapi.json` holds it: pretty-printed with one-space indents, and a final
/// newline.
pub fn document_text() -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    // A `Value` always serializes.
    let _ = serde::Serialize::serialize(&document(), &mut ser);
    String::from_utf8_lossy(&out).into_owned() + "\n"
}

/// Schemas of answers (as serialized) and of request bodies (as deserialized), collected as
/// components.
struct Schemas {
    answers: SchemaGenerator,
    bodies: SchemaGenerator,
}

impl Schemas {
    fn new() -> Schemas {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        });
        let mut answers = settings.clone().for_serialize().into_generator();
        // Every error answer refers to it by name (see `error`).
        answers.subschema_for::<ErrorBody>();
        Schemas {
            answers,
            bodies: settings.for_deserialize().into_generator(),
        }
    }

    /// `T` as a `$ref` to its component.
    fn answer<T: JsonSchema>(&mut self) -> Value {
        self.answers.subschema_for::<T>().to_value()
    }

    /// A request body of type `T`.
    fn body<T: JsonSchema>(&mut self, required: bool) -> Value {
        let schema = self.bodies.subschema_for::<T>().to_value();
        json!({"required": required, "content": {"application/json": {"schema": schema}}})
    }

    fn into_components(mut self) -> Map<String, Value> {
        let mut all = self.answers.take_definitions(true);
        all.extend(self.bodies.take_definitions(true));
        all
    }
}

/// The whole document.
pub fn document() -> Value {
    let mut schemas = Schemas::new();
    let mut paths = api_reads(&mut schemas);
    paths.extend(api_actions(&mut schemas));
    paths.extend(clusters::paths(&mut schemas));
    paths.extend(other_routes());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ipfs-kit-operator dashboard",
            "version": "v1alpha1",
            "description": "Status, realtime figures, logs and peer actions of IPFS clusters, \
                served from reconciled status. Every JSON answer is an envelope: `{\"success\": \
                true, \"data\": ...}` or `{\"success\": false, \"error\": {\"code\", \
                \"message\"}}`. GETs never act and never probe; POSTs that change something \
                need `Authorization: Bearer <token>` and become requests the reconciler carries \
                out. Reads need the token only when the dashboard runs with --auth-reads.",
        },
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "The dashboard token: the Secret mounted with --token-file in \
                    Kubernetes, `<state>/<cluster>/dashboard-token` locally",
            }},
            "schemas": schemas.into_components(),
        },
        "paths": paths,
    })
}

/// An answer in the success envelope, `data` of schema `data`.
fn ok(description: &str, data: Value) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["success", "data"],
            "properties": {"success": {"const": true}, "data": data},
        }}},
    })
}

fn error(description: &str) -> Value {
    let schema = json!({"$ref": format!("#/components/schemas/{}", ErrorBody::schema_name())});
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// Responses by status code.
fn responses(answers: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(answers.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

const AMBIGUOUS: &str = "A toolkit short name (`ipfs`, `ipfs_cluster`) that stands for several \
     daemons: the message lists their full names, name one";

const READ_403: &str = "--auth-reads with --kube-auth: RBAC does not let the Kubernetes \
     identity list ipfsclusters (the message names it)";

const READ_503: &str = "--auth-reads with --kube-auth: the Kubernetes API could not review the \
     token";

const READ_401: &str =
    "Reads are authenticated (--auth-reads) and the bearer token is missing or wrong";

/// The path parameter naming a backend.
fn backend_parameter() -> Value {
    json!({
        "name": "backend",
        "in": "path",
        "required": true,
        "description": "`<cluster>/<peer>/<daemon>` locally, `<namespace>/<cluster>/<peer>/<daemon>` \
            in Kubernetes; daemon is `ipfs` (also `kubo`) or `cluster`. Contains slashes; every \
            other part is a DNS-1123 label. Looked up in the reconciled status, never used as a \
            path. The old toolkit's short names `ipfs` and `ipfs_cluster` (or `ipfs-cluster`) \
            name the Kubo / IPFS Cluster daemon when there is one cluster of one peer; else all \
            of them: a status answers for them together, a restart or a log is refused with 409 \
            listing their full names.",
        "schema": {"type": "string", "example": "demo/peer-0/ipfs"},
    })
}

/// A GET route under `/api/dashboard`: `data` with 200, the `more` answers, and 401.
fn read_path(summary: &str, data: Value, mut more: Vec<(&'static str, Value)>) -> Value {
    more.insert(0, ("200", ok("OK", data)));
    more.push(("401", error(READ_401)));
    more.push(("403", error(READ_403)));
    if !more.iter().any(|(code, _)| *code == "503") {
        more.push(("503", error(READ_503)));
    }
    json!({"get": {"summary": summary, "responses": responses(more)}})
}

/// `GET /api/dashboard/logs/{backend}?lines=N`.
fn logs_path(s: &mut Schemas) -> Value {
    let lines = json!({
        "name": "lines",
        "in": "query",
        "required": false,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LOG_LINES,
            "default": DEFAULT_LOG_LINES},
    });
    let mut logs = read_path(
        "The daemon's own recent log lines (local: its captured log file; Kubernetes: the pod \
         container log)",
        s.answer::<LogsView>(),
        vec![
            (
                "400",
                error("Unknown query parameter or lines not a number"),
            ),
            (
                "404",
                error("Unknown backend, or the daemon has no log yet"),
            ),
            ("409", error(AMBIGUOUS)),
            ("422", error("lines out of range")),
            ("501", error("This dashboard has no access to logs")),
            (
                "502",
                error("The log could not be read (the reason names the API or file error)"),
            ),
        ],
    );
    logs["get"]["parameters"] = json!([backend_parameter(), lines]);
    logs
}

/// `GET /api/dashboard/history/{name}?since=&step=`.
fn history_path(s: &mut Schemas) -> Value {
    let mut history = read_path(
        &format!(
            "Health over time: one sample per probe interval (score, phase or state; per peer \
             repo size, bandwidth rates and pins by state), oldest first. Without `since`, the \
             latest {DEFAULT_POINTS} samples"
        ),
        s.answer::<HistoryView>(),
        vec![
            (
                "400",
                error("A bad `since` or `step`, or an unknown parameter (named)"),
            ),
            ("404", error("No history for that name")),
            (
                "502",
                error("Sidecar: the leader controller did not answer"),
            ),
            (
                "503",
                error("Sidecar: no leader, or its address is not known yet"),
            ),
        ],
    );
    history["get"]["parameters"] = json!([
        {
            "name": "name",
            "in": "path",
            "required": true,
            "description": "A cluster (`<cluster>` or `<namespace>/<cluster>`) or a peer (`.../<peer>`)",
            "schema": {"type": "string"},
        },
        {
            "name": "since",
            "in": "query",
            "required": false,
            "description": "Start of the range: an RFC 3339 time, or a duration back from now \
                (`90s`, `15m`, `6h`, `2d`)",
            "schema": {"type": "string", "example": "6h"},
        },
        {
            "name": "step",
            "in": "query",
            "required": false,
            "description": format!(
                "Downsample to buckets of this duration (at least `1s`; aligned on the epoch): \
                 numbers averaged, the last state of each bucket. A range of more than \
                 {MAX_POINTS} samples is downsampled to fit without it"
            ),
            "schema": {"type": "string", "example": "5m"},
        },
    ]);
    history
}

/// The GET routes under `/api/dashboard`.
fn api_reads(s: &mut Schemas) -> Map<String, Value> {
    let mut backend = read_path(
        "One daemon of one peer (with the old toolkit's backend fields), or the daemons a short \
         name stands for",
        s.answer::<BackendStatus>(),
        vec![("404", error("Unknown or malformed backend name"))],
    );
    backend["get"]["parameters"] = json!([backend_parameter()]);
    let logs = logs_path(s);
    let history = history_path(s);
    let events = json!({"get": {
        "summary": "Server-Sent Events: a `status` event with the overall summary and each \
            cluster's phase and score, at once and after every change",
        "responses": responses([
            ("200", json!({
                "description": "text/event-stream; the data of each `status` event is a \
                    StatusEvent",
                "content": {"text/event-stream": {
                    "schema": {"type": "string"},
                    "x-event-data": s.answer::<StatusEvent>(),
                }},
            })),
            ("401", error(READ_401)),
        ]),
    }});
    let status = read_path(
        "Overall health, clusters with their peers, libp2p view, alerts; and the old toolkit's \
         fields (timestamp, overall_health, backends, cluster, libp2p, metrics)",
        s.answer::<StatusView>(),
        Vec::new(),
    );
    let realtime = read_path(
        "Host figures (cpu, memory, disk, load) and per-peer bandwidth, repo size and swarm \
         peers from the latest samples; and the old toolkit's fields (timestamp, system, \
         backends, network, performance)",
        s.answer::<RealtimeView>(),
        Vec::new(),
    );
    let mut request = read_path(
        "What became of a request answered 202 (its `watch` URL): queued, running, done or \
         failed with the reason. Finished requests are kept 15 minutes (at most 200)",
        s.answer::<crate::api::RequestRecord>(),
        vec![
            ("400", error("The id is not a number")),
            ("404", error("No such request (or it finished long ago)")),
        ],
    );
    request["get"]["parameters"] = json!([{"name": "id", "in": "path", "required": true,
        "description": "The request's id, from the 202 answer",
        "schema": {"type": "integer", "minimum": 0}}]);
    let api = |path: &str| format!("/api/dashboard{path}");
    Map::from_iter([
        (api("/requests/{id}"), request),
        (api("/status"), status),
        (api("/metrics/realtime"), realtime),
        (api("/backends/{backend}/status"), backend),
        (api("/logs/{backend}"), logs),
        (api("/history/{name}"), history),
        (api("/events"), events),
    ])
}

/// The refusals of a request for a change.
fn refusals() -> [(&'static str, Value); 9] {
    [
        ("400", error("Malformed JSON")),
        ("401", error("Missing or wrong bearer token")),
        (
            "403",
            error(
                "The dashboard has no token configured and refuses every change, or RBAC does \
                 not allow the Kubernetes identity to patch the IpfsCluster",
            ),
        ),
        ("404", error("Unknown cluster or backend")),
        (
            "413",
            error(&format!("Body larger than {} KiB", BODY_LIMIT / 1024)),
        ),
        ("415", error("Body not sent as application/json")),
        ("422", error("Unknown field, wrong type, or unknown action")),
        (
            "500",
            error(
                "The request was not recorded: the Kubernetes API refused to record it (the \
                 dashboard's RBAC); nothing will be done",
            ),
        ),
        (
            "503",
            error(
                "The request was not recorded (the reconciler is not running, the Kubernetes \
                 API is unreachable), or the Kubernetes API cannot review the token",
            ),
        ),
    ]
}

/// The POST routes under `/api/dashboard`: requests for changes (and the old toolkit's reads).
fn api_actions(s: &mut Schemas) -> Map<String, Value> {
    let accepted = ok(
        "Recorded: the reconciler carries it out; `watch` (GET /api/dashboard/requests/{id}) \
         tells what became of it",
        s.answer::<Accepted>(),
    );
    let refusals = refusals();
    let action = |summary: String, body: Option<Value>, answers: Vec<(&'static str, Value)>| {
        let mut op = json!({
            "summary": summary,
            "security": [{"bearer": []}],
            "responses": responses(answers.into_iter().chain(refusals.clone())),
        });
        if let Some(body) = body {
            op["requestBody"] = body;
        }
        json!({"post": op})
    };
    let mut restart = action(
        "Ask the reconciler to restart one daemon".into(),
        None,
        vec![("202", accepted.clone()), ("409", error(AMBIGUOUS))],
    );
    restart["post"]["parameters"] = json!([backend_parameter()]);
    let daemon = action(
        "restart | status of one daemon (status is a read)".into(),
        Some(s.body::<DaemonAction>(true)),
        vec![
            ("200", ok("status", s.answer::<DaemonStatusRead>())),
            ("202", accepted.clone()),
            ("409", error(AMBIGUOUS)),
        ],
    );
    let cluster = action(
        "restart | status | peers of a cluster (status and peers are reads)".into(),
        Some(s.body::<ClusterAction>(true)),
        vec![
            (
                "200",
                ok("status or peers", s.answer::<ClusterActionRead>()),
            ),
            ("202", accepted),
        ],
    );
    let check = action(
        format!(
            "Ask the reconciler for an immediate probe round and answer with its results once \
             it has finished (waits up to {} s)",
            HEALTH_CHECK_WAIT.as_secs()
        ),
        Some(s.body::<HealthCheck>(false)),
        vec![
            ("200", ok("OK", s.answer::<HealthCheckView>())),
            (
                "409",
                error(
                    "The probe request failed (e.g. the cluster is paused), or a short name \
                     stands for daemons of several clusters; the message says which",
                ),
            ),
            (
                "504",
                error(
                    "The requested probe round did not finish in time; the message says where \
                     it is and its watch URL",
                ),
            ),
        ],
    );
    let api = |path: &str| format!("/api/dashboard{path}");
    Map::from_iter([
        (api("/backends/{backend}/restart"), restart),
        (api("/daemon/action"), daemon),
        (api("/cluster/action"), cluster),
        (api("/health/check"), check),
    ])
}

/// Plain text and page routes outside `/api/dashboard`.
fn other_routes() -> Map<String, Value> {
    let text = |summary: &str, description: &str, media: &str| {
        json!({"get": {"summary": summary, "responses": {"200": {
            "description": description,
            "content": {media: {"schema": {"type": "string"}}},
        }}}})
    };
    let mut metrics = text(
        "Prometheus metrics: this dashboard's requests and latency by route, and the build; \
         under `local up` also the supervisor's cluster, peer, healing and reconcile series (the \
         README's Metrics table lists them)",
        "OpenMetrics text when the Accept header asks for it, else the Prometheus text format \
         0.0.4",
        "application/openmetrics-text",
    );
    metrics["get"]["responses"]["401"] = error(READ_401);
    let readyz = json!({"get": {
        "summary": "Ready once the first reconciled status arrived",
        "responses": {
            "200": {"description": "ok"},
            "503": {"description": "waiting for the first reconciled status"},
        },
    }});
    let openapi = json!({"get": {"summary": "This document", "responses": {"200": {
        "description": "OpenAPI 3.1",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }}}});
    let assets = json!({"get": {
        "summary": "The page's scripts (JavaScript modules), style sheet and icon",
        "parameters": [{"name": "asset", "in": "path", "required": true,
            "schema": {"enum": ["app.js", "lib.js", "charts.js", "cluster.js", "config.js",
                "logs.js", "app.css", "icon.svg"]}}],
        "responses": {
            "200": {"description": "The asset"},
            "304": {"description": "Unchanged (If-None-Match)"},
            "404": {"description": "No such asset"},
        },
    }});
    let page = text(
        "The web page: live status; per cluster its peers (restart and log buttons), health \
         over time, pins, healing timeline, alerts and configuration; daemon logs with follow \
         (embedded; no other host is contacted)",
        "HTML",
        "text/html",
    );
    Map::from_iter([
        ("/metrics".to_string(), metrics),
        (
            "/healthz".to_string(),
            text("The process answers", "ok", "text/plain"),
        ),
        ("/readyz".to_string(), readyz),
        ("/openapi.json".to_string(), openapi),
        ("/".to_string(), page),
        ("/assets/{asset}".to_string(), assets),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked_in_path() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/dashboard/openapi.json")
    }

    /// `scripts/gen-openapi.sh` runs this test with `UPDATE_OPENAPI=1` to rewrite the file.
    #[test]
    fn the_checked_in_document_is_the_generated_one() {
        let generated = document_text();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(checked_in_path(), &generated).expect("write openapi.json");
            return;
        }
        assert!(
            OPENAPI == generated,
            "src/dashboard/openapi.json is stale: regenerate it with scripts/gen-openapi.sh \
             and commit the result"
        );
    }

    #[test]
    fn every_reference_names_a_component() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 10, "{refs:?}");
        for r in refs {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r} does not point into components"));
            assert!(schemas.contains_key(name), "{r} names no component");
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
