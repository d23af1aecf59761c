//! Arguments checked against the tool's own input schema before the tool
//! sees them. Numbers and booleans sent as strings are taken where that is
//! unambiguous (MCP Inspector 0.15 sends every argument as a string), and
//! whatever still does not fit is one message in the schema's terms ("limit
//! must be a whole number from 1 to 200"), answered as a tool error so the
//! model can read it and try again.

use serde_json::{Map, Value};

/// Coerces `args` in place to `schema`, or says what is wrong with them.
pub fn check(schema: &Map<String, Value>, args: &mut Map<String, Value>) -> Result<(), String> {
    let properties = schema.get("properties").and_then(Value::as_object);
    let empty = Map::new();
    let properties = properties.unwrap_or(&empty);
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    if closed && let Some(unknown) = args.keys().find(|k| !properties.contains_key(*k)) {
        let mut known: Vec<&str> = properties.keys().map(String::as_str).collect();
        known.sort_unstable();
        return Err(if known.is_empty() {
            format!("unknown argument {}: this tool takes no arguments", quoted(unknown))
        } else {
            format!("unknown argument {}: this tool takes {}", quoted(unknown), known.join(", "))
        });
    }
    let required: Vec<&str> =
        schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    for name in &required {
        if args.get(*name).is_none_or(Value::is_null) {
            return Err(format!("{name} is required"));
        }
    }
    for (name, property) in properties {
        let Some(value) = args.get_mut(name) else { continue };
        if value.is_null() {
            // Optional and absent; `required` was checked above.
            args.remove(name);
            continue;
        }
        let Some(property) = property.as_object() else { continue };
        coerce(name, property, value)?;
    }
    Ok(())
}

/// The non-null JSON type a property takes (`["integer", "null"]` is an
/// optional integer).
fn kind(property: &Map<String, Value>) -> Option<&str> {
    match property.get("type")? {
        Value::String(t) => Some(t.as_str()),
        Value::Array(types) => types.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

fn coerce(name: &str, property: &Map<String, Value>, value: &mut Value) -> Result<(), String> {
    match kind(property) {
        Some("integer") => {
            let (min, max) = bounds(property);
            let whole = match &*value {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match whole {
                Some(n) if min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m) => *value = Value::from(n),
                _ => return Err(format!("{name} must be {}", whole_number(min, max))),
            }
        }
        Some("number") => {
            let number = match &*value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
                _ => None,
            };
            match number.and_then(serde_json::Number::from_f64) {
                Some(n) => *value = Value::Number(n),
                None => return Err(format!("{name} must be a number")),
            }
        }
        Some("boolean") => {
            let flag = match &*value {
                Value::Bool(b) => Some(*b),
                Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
                Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
                _ => None,
            };
            match flag {
                Some(b) => *value = Value::Bool(b),
                None => return Err(format!("{name} must be true or false")),
            }
        }
        Some("string") => {
            let Value::String(text) = &*value else {
                return Err(format!("{name} must be text"));
            };
            if let Some(choices) = property.get("enum").and_then(Value::as_array) {
                let choices: Vec<&str> = choices.iter().filter_map(Value::as_str).collect();
                match choices.iter().find(|c| c.eq_ignore_ascii_case(text.trim())) {
                    Some(choice) => *value = Value::String((*choice).to_string()),
                    None => return Err(format!("{name} must be one of {}", choices.join(", "))),
                }
            }
        }
        Some("array") => {
            // A list sent as a string: JSON, else one item.
            if let Value::String(text) = &*value {
                *value = match serde_json::from_str::<Value>(text.trim()) {
                    Ok(list @ Value::Array(_)) => list,
                    _ => Value::Array(vec![Value::String(text.clone())]),
                };
            }
            let Value::Array(items) = value else {
                return Err(format!("{name} must be a list"));
            };
            let item_kind = property.get("items").and_then(Value::as_object);
            if let Some(item) = item_kind {
                for entry in items.iter_mut() {
                    coerce(&format!("each of {name}"), item, entry)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The range an integer may take: the schema's `minimum`/`maximum`, else
/// what its `format` holds.
fn bounds(property: &Map<String, Value>) -> (Option<i64>, Option<i64>) {
    let (format_min, format_max) = match property.get("format").and_then(Value::as_str) {
        Some("uint32") => (Some(0), Some(i64::from(u32::MAX))),
        Some("int32") => (Some(i64::from(i32::MIN)), Some(i64::from(i32::MAX))),
        Some("uint64" | "uint") => (Some(0), None),
        _ => (None, None),
    };
    let number = |key: &str| property.get(key).and_then(Value::as_f64).map(|f| f as i64);
    (number("minimum").or(format_min), number("maximum").or(format_max))
}

fn whole_number(min: Option<i64>, max: Option<i64>) -> String {
    // The type's own limits say nothing a model needs.
    let min = min.filter(|m| *m != i64::from(i32::MIN));
    let max = max.filter(|m| *m < i64::from(i32::MAX));
    match (min, max) {
        (Some(min), Some(max)) => format!("a whole number from {min} to {max}"),
        (Some(0), None) => "a whole number, 0 or more".to_string(),
        (Some(min), None) => format!("a whole number of at least {min}"),
        (None, Some(max)) => format!("a whole number of at most {max}"),
        (None, None) => "a whole number".to_string(),
    }
}

/// An argument name as the client sent it, made safe to print.
fn quoted(name: &str) -> String {
    format!("{:?}", crate::domain::text::clip(&super::views::sanitize(name), 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Map<String, Value> {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["key"],
            "properties": {
                "key": {"type": "string"},
                "limit": {"type": ["integer", "null"], "format": "uint32", "minimum": 1, "maximum": 200},
                "expected_version": {"type": ["integer", "null"], "format": "int32", "minimum": 1},
                "failed_only": {"type": ["boolean", "null"]},
                "priority": {"type": ["string", "null"], "enum": ["urgent", "high", "medium", "low", "none", null]},
                "labels": {"type": ["array", "null"], "items": {"type": "string"}}
            }
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn checked(args: Value) -> Result<Value, String> {
        let mut args = args.as_object().unwrap().clone();
        check(&schema(), &mut args).map(|()| Value::Object(args))
    }

    #[test]
    fn strings_that_are_numbers_or_booleans_are_taken() {
        let args = checked(json!({"key": "OPS-1", "limit": " 20 ", "failed_only": "TRUE", "expected_version": 3}));
        assert_eq!(args.unwrap(), json!({"key": "OPS-1", "limit": 20, "failed_only": true, "expected_version": 3}));
        let args = checked(json!({"key": "OPS-1", "priority": "High", "labels": "[\"a\",\"b\"]"})).unwrap();
        assert_eq!(args["priority"], "high");
        assert_eq!(args["labels"], json!(["a", "b"]));
        assert_eq!(checked(json!({"key": "OPS-1", "labels": "bug"})).unwrap()["labels"], json!(["bug"]));
    }

    #[test]
    fn what_does_not_fit_is_said_in_the_schemas_terms() {
        let error = |args: Value| checked(args).unwrap_err();
        assert_eq!(error(json!({"key": "A-1", "limit": "0"})), "limit must be a whole number from 1 to 200");
        assert_eq!(error(json!({"key": "A-1", "limit": 2.5})), "limit must be a whole number from 1 to 200");
        assert_eq!(error(json!({"key": "A-1", "limit": "ten"})), "limit must be a whole number from 1 to 200");
        assert_eq!(
            error(json!({"key": "A-1", "expected_version": "x"})),
            "expected_version must be a whole number of at least 1"
        );
        assert_eq!(error(json!({"key": "A-1", "failed_only": "yes"})), "failed_only must be true or false");
        assert_eq!(
            error(json!({"key": "A-1", "priority": "p1"})),
            "priority must be one of urgent, high, medium, low, none"
        );
        assert_eq!(error(json!({"limit": 3})), "key is required");
        assert_eq!(error(json!({"key": 12})), "key must be text");
        assert_eq!(error(json!({"key": null})), "key is required");
        let unknown = error(json!({"key": "A-1", "lmit": 3}));
        assert!(unknown.starts_with("unknown argument \"lmit\": this tool takes"), "{unknown}");
        let hostile = error(json!({"key": "A-1", "\u{1b}]52;c;aGk=\u{7}": 1}));
        assert!(!hostile.contains('\u{1b}'), "{hostile:?}");
    }

    #[test]
    fn null_optional_arguments_are_dropped() {
        assert_eq!(checked(json!({"key": "A-1", "limit": null})).unwrap(), json!({"key": "A-1"}));
    }
}
