//! Looking an answer up in the document: the schema the document gives for the answer of a
//! request (route, method and status), self-contained so that any JSON Schema 2020-12 validator
//! can check a body against it; and the fields of a body the schema does not describe (the
//! generated schemas allow unknown fields, so a validator alone would not notice a field the
//! document forgot).

use serde_json::{Map, Value, json};

/// The document as served.
fn served() -> Result<Value, String> {
    serde_json::from_str(super::OPENAPI).map_err(|e| format!("openapi.json: {e}"))
}

/// Whether `path` (without its query) is an instance of `template`: each `{parameter}` stands
/// for one or more segments (backend and history names contain slashes).
fn matches(template: &[&str], path: &[&str]) -> bool {
    match (template.split_first(), path.split_first()) {
        (None, None) => true,
        (Some((t, rest)), Some(_)) if t.starts_with('{') && t.ends_with('}') => (1..=path.len())
            .any(|n| path[..n].iter().all(|s| !s.is_empty()) && matches(rest, &path[n..])),
        (Some((t, rest)), Some((p, path_rest))) => t == p && matches(rest, path_rest),
        _ => false,
    }
}

/// The document's route template for `path` (e.g. `/api/dashboard/backends/{backend}/status`
/// for `/api/dashboard/backends/demo/peer-0/ipfs/status?x=1`).
fn route<'a>(paths: &'a Map<String, Value>, path: &str) -> Option<(&'a String, &'a Value)> {
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    // A literal route before a templated one (`/requests/{id}` never hides another).
    let mut candidates: Vec<(&String, &Value)> = paths
        .iter()
        .filter(|(template, _)| {
            let template: Vec<&str> = template.split('/').collect();
            matches(&template, &segments)
        })
        .collect();
    candidates.sort_by_key(|(template, _)| template.matches('{').count());
    candidates.into_iter().next()
}

/// The schema of the JSON answer of `method path` with `status`, with the document's
/// components at its root so that its `$ref`s resolve; `Ok(None)` when the document gives that
/// answer without a JSON body. An error names what the document does not have: the route, the
/// method or the status.
pub fn answer_schema(method: &str, path: &str, status: u16) -> Result<Option<Value>, String> {
    let doc = served()?;
    let paths = doc["paths"]
        .as_object()
        .ok_or("the document has no paths")?;
    let (template, item) =
        route(paths, path).ok_or_else(|| format!("no route in the document for {path}"))?;
    let operation = &item[method.to_ascii_lowercase()];
    if operation.is_null() {
        return Err(format!("{template} has no {method} in the document"));
    }
    let answer = &operation["responses"][status.to_string()];
    if answer.is_null() {
        return Err(format!(
            "{method} {template} does not document the status {status}"
        ));
    }
    let Some(schema) = answer["content"]["application/json"].get("schema") else {
        return Ok(None);
    };
    Ok(Some(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"].clone(),
        "allOf": [schema],
    })))
}

/// The schemas that apply at one place of an instance: `schema` itself, what its `$ref`
/// names, and the branches of its `allOf`, `anyOf` and `oneOf` (any branch may be the one
/// that holds, so each counts).
fn expand<'a>(root: &'a Value, schema: &'a Value, out: &mut Vec<&'a Value>) {
    if out.iter().any(|s| std::ptr::eq(*s, schema)) {
        return;
    }
    out.push(schema);
    if let Some(pointer) = schema["$ref"].as_str().and_then(|r| r.strip_prefix('#'))
        && let Some(target) = root.pointer(pointer)
    {
        expand(root, target, out);
    }
    for applicator in ["allOf", "anyOf", "oneOf"] {
        for branch in schema[applicator].as_array().into_iter().flatten() {
            expand(root, branch, out);
        }
    }
}

/// Whether a schema allows any value without describing it: `true`, `{}`, `{"type":
/// "object"}` (a free-form `serde_json::Value` or map), each with annotations only.
fn free_form(schema: &Value) -> bool {
    const ANNOTATIONS: [&str; 7] = [
        "description",
        "title",
        "examples",
        "example",
        "default",
        "format",
        "deprecated",
    ];
    match schema {
        Value::Bool(allowed) => *allowed,
        Value::Object(map) => map.iter().all(|(k, v)| {
            ANNOTATIONS.contains(&k.as_str())
                || k.starts_with("x-")
                || (k == "type" && v == "object")
        }),
        _ => false,
    }
}

fn walk<'a>(
    root: &'a Value,
    schemas: &[&'a Value],
    instance: &Value,
    at: &str,
    out: &mut Vec<String>,
) {
    let mut all = Vec::new();
    for schema in schemas {
        expand(root, schema, &mut all);
    }
    if all.iter().any(|s| free_form(s)) {
        return;
    }
    match instance {
        Value::Object(fields) => {
            for (key, value) in fields {
                let mut next: Vec<&Value> = all
                    .iter()
                    .filter_map(|s| s["properties"].get(key))
                    .collect();
                if next.is_empty() {
                    next = all
                        .iter()
                        .filter_map(|s| s.get("additionalProperties"))
                        .filter(|extra| **extra != Value::Bool(false))
                        .collect();
                }
                let place = format!("{at}/{key}");
                if next.is_empty() {
                    out.push(place);
                } else {
                    walk(root, &next, value, &place, out);
                }
            }
        }
        Value::Array(items) => {
            let next: Vec<&Value> = all.iter().filter_map(|s| s.get("items")).collect();
            for (i, item) in items.iter().enumerate() {
                walk(root, &next, item, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The places (JSON pointers) of the fields of `instance` that `schema` (as made by
/// [`answer_schema`]) does not describe.
pub fn undeclared_fields(schema: &Value, instance: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, &[schema], instance, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_found_with_slashes_in_their_parameters() {
        let split = |s: &'static str| s.split('/').collect::<Vec<_>>();
        let template = split("/api/dashboard/backends/{backend}/status");
        assert!(matches(
            &template,
            &split("/api/dashboard/backends/a/b/c/ipfs/status")
        ));
        assert!(matches(
            &template,
            &split("/api/dashboard/backends/ipfs/status")
        ));
        assert!(!matches(
            &template,
            &split("/api/dashboard/backends/status")
        ));
        assert!(!matches(
            &template,
            &split("/api/dashboard/backends/a/restart")
        ));
        let schema = answer_schema("GET", "/api/dashboard/logs/demo/peer-0/ipfs?lines=2", 200)
            .expect("documented")
            .expect("JSON");
        assert!(
            schema["allOf"][0]["properties"]["data"].is_object(),
            "{schema}"
        );
        let err = answer_schema("GET", "/api/dashboard/status", 418).expect_err("no 418");
        assert!(err.contains("418"), "{err}");
        assert_eq!(answer_schema("GET", "/healthz", 200), Ok(None));
    }

    #[test]
    fn a_field_the_schema_does_not_describe_is_named() {
        let schema = answer_schema("GET", "/api/dashboard/requests/7", 200)
            .expect("documented")
            .expect("JSON");
        let record = json!({"success": true, "data": {
            "request": {"id": 7, "action": "restart", "cluster": "demo"},
            "state": "done", "updatedAt": "2026-11-27T21:00:10Z", "surprise": 1}});
        assert_eq!(undeclared_fields(&schema, &record), vec!["/data/surprise"]);
    }
}
