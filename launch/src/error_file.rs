//! torchelastic error files: the JSON a failing worker leaves at
//! `TORCHELASTIC_ERROR_FILE`, read by its launcher for the failure report.
//!
//! The format is torch's:
//! `{"message": {"message": "...", "extraInfo": {"py_callstack": "...", "timestamp": "<unix seconds>"}}}`
//! (a plain string `message` is accepted too). A launcher that itself runs under a
//! launcher copies its root failure's file to its own `TORCHELASTIC_ERROR_FILE`,
//! adding `errorCode`.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The environment variable naming a worker's error file.
pub const ERROR_FILE_ENV: &str = "TORCHELASTIC_ERROR_FILE";

/// What a worker's error file says.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorFileData {
    /// The error message.
    pub message: String,
    /// The call stack (`py_callstack`), if any.
    pub traceback: Option<String>,
    /// When the error happened (unix seconds), if recorded.
    pub timestamp: Option<u64>,
    /// The file's JSON as read.
    pub raw: Value,
}

/// Seconds since the unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads and interprets `path`; `None` when it is missing or empty. A file that is
/// not torchelastic JSON is returned as its text.
pub fn read(path: &Path) -> Option<ErrorFileData> {
    let text = std::fs::read_to_string(path).ok()?;
    if text.trim().is_empty() {
        return None;
    }
    let Ok(raw) = serde_json::from_str::<Value>(&text) else {
        return Some(ErrorFileData {
            message: text.trim().to_string(),
            traceback: None,
            timestamp: None,
            raw: Value::String(text),
        });
    };
    let as_u64 = |v: &Value| match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        Value::String(s) => s.trim().parse::<f64>().ok().map(|f| f as u64),
        _ => None,
    };
    let (message, traceback, timestamp) = match raw.get("message") {
        Some(Value::Object(m)) => {
            let extra = m.get("extraInfo");
            (
                m.get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| Value::Object(m.clone()).to_string()),
                extra
                    .and_then(|e| e.get("py_callstack"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                extra.and_then(|e| e.get("timestamp")).and_then(as_u64),
            )
        }
        Some(Value::String(s)) => (s.clone(), None, None),
        _ => (raw.to_string(), None, None),
    };
    Some(ErrorFileData {
        message,
        traceback,
        timestamp,
        raw,
    })
}

/// The JSON of an error file with `message` and `traceback`, stamped now.
pub fn to_json(message: &str, traceback: &str) -> Value {
    json!({
        "message": {
            "message": message,
            "extraInfo": {
                "py_callstack": traceback,
                "timestamp": unix_now().to_string(),
            }
        }
    })
}

/// Writes `value` to `path` (replacing it), creating its directory.
pub fn write_json(path: &Path, value: &Value) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, value.to_string())
}

/// Writes an error file for `message` to `path`.
pub fn write(path: &Path, message: &str, traceback: &str) -> std::io::Result<()> {
    write_json(path, &to_json(message, traceback))
}

/// The JSON a launcher copies into its own error file: the root failure's file with
/// `errorCode` set (or a synthesized one when the worker left none).
pub fn nested_copy(root: Option<&ErrorFileData>, fallback_message: &str, code: i32) -> Value {
    let mut v = match root {
        Some(d) if d.raw.get("message").is_some_and(Value::is_object) => d.raw.clone(),
        Some(d) => to_json(&d.message, d.traceback.as_deref().unwrap_or("")),
        None => to_json(fallback_message, ""),
    };
    if let Some(Value::Object(m)) = v.get_mut("message") {
        m.insert("errorCode".into(), json!(code));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_formats() {
        let dir = std::env::temp_dir().join(format!("tutti-ef-{}", std::process::id()));
        let p = dir.join("e.json");
        write(&p, "boom", "at main").unwrap();
        let d = read(&p).unwrap();
        assert_eq!(d.message, "boom");
        assert_eq!(d.traceback.as_deref(), Some("at main"));
        assert!(d.timestamp.unwrap() > 1_600_000_000);
        let copy = nested_copy(Some(&d), "x", 3);
        assert_eq!(copy["message"]["errorCode"], 3);
        assert_eq!(copy["message"]["message"], "boom");

        std::fs::write(&p, r#"{"message": "plain"}"#).unwrap();
        assert_eq!(read(&p).unwrap().message, "plain");
        std::fs::write(&p, "not json").unwrap();
        assert_eq!(read(&p).unwrap().message, "not json");
        std::fs::write(
            &p,
            r#"{"message": {"message": "m", "extraInfo": {"timestamp": 17}}}"#,
        )
        .unwrap();
        assert_eq!(read(&p).unwrap().timestamp, Some(17));
        std::fs::remove_file(&p).unwrap();
        assert!(read(&p).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
