//! Snapshot format versions. The payload's canonical JSON carries no version
//! itself; the version travels next to it (the `format_version` column, the
//! export file's header). Older versions are upgraded here, step by step, on
//! read; a newer version than this binary knows is refused.
//!
//! - v1: a task listed its modules by name (`"modules": ["Billing"]`).
//! - v2: by id (`"module_ids": [3]`), so renaming a module cannot break a snapshot.

use serde_json::Value;

use super::model::{FORMAT_VERSION, SnapshotData};

pub fn decode(version: i32, canonical: &[u8]) -> Result<SnapshotData, String> {
    if version > FORMAT_VERSION {
        return Err(format!(
            "the snapshot is in format {version}, newer than this mctl reads ({FORMAT_VERSION}): upgrade mctl"
        ));
    }
    if version < 1 {
        return Err(format!("unknown snapshot format {version}"));
    }
    let mut data: SnapshotData = if version == FORMAT_VERSION {
        // Straight into the typed rows: no JSON tree in between (half the time on 100,000 tasks).
        serde_json::from_slice(canonical).map_err(|e| not_current(canonical, e))?
    } else {
        let value: Value =
            serde_json::from_slice(canonical).map_err(|e| format!("the snapshot payload is not valid JSON: {e}"))?;
        serde_json::from_value(v1_to_v2(value)?)
            .map_err(|e| format!("the snapshot payload does not match format {FORMAT_VERSION}: {e}"))?
    };
    data.sort();
    Ok(data)
}

/// Says whether a payload that did not decode is not JSON at all or JSON of
/// the wrong shape.
fn not_current(canonical: &[u8], e: serde_json::Error) -> String {
    if serde_json::from_slice::<serde::de::IgnoredAny>(canonical).is_err() {
        format!("the snapshot payload is not valid JSON: {e}")
    } else {
        format!("the snapshot payload does not match format {FORMAT_VERSION}: {e}")
    }
}

/// v1 → v2: task module names become module ids.
fn v1_to_v2(mut value: Value) -> Result<Value, String> {
    let modules: Vec<(String, i64)> = value["modules"]
        .as_array()
        .ok_or("format 1 payload without modules")?
        .iter()
        .filter_map(|m| Some((m["name"].as_str()?.to_lowercase(), m["id"].as_i64()?)))
        .collect();
    let tasks = value["tasks"].as_array_mut().ok_or("format 1 payload without tasks")?;
    for task in tasks {
        let object = task.as_object_mut().ok_or("format 1 task is not an object")?;
        let names = object.remove("modules").unwrap_or(Value::Array(Vec::new()));
        let mut ids = Vec::new();
        for name in names.as_array().ok_or("format 1 task modules is not a list")? {
            let name = name.as_str().ok_or("format 1 module name is not text")?.to_lowercase();
            let id = modules
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, id)| *id)
                .ok_or_else(|| format!("format 1 task refers to unknown module {name:?}"))?;
            ids.push(Value::from(id));
        }
        object.insert("module_ids".into(), Value::Array(ids));
    }
    Ok(value)
}
