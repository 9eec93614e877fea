//! The agent manifest as uploaded, parsed into checked values. The format is documented in
//! `docs/agents.md`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::LimitSettings;
use crate::records::{Agent, Limits};

/// A checked manifest. Construct with [`Manifest::parse`].
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub description: String,
    pub version: String,
    pub capabilities: Vec<String>,
    pub price: f64,
    pub limits: Limits,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Checked to be a JSON object; compiled as a schema by the marketplace.
    pub input_schema: Option<Value>,
    pub metadata: Option<Value>,
}

/// Raw manifest fields, as they arrive from a form or a JSON file (`manifest.json`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub version: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub price: Option<f64>,
    #[serde(default)]
    pub limits: Limits,
    /// Arguments after argv[0] (the agent's name).
    #[serde(default)]
    pub argv: Vec<String>,
    /// Environment variables, besides the `ZEROSTATE_*` ones every run gets.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// JSON Schema of the task input.
    #[serde(default)]
    pub input_schema: Option<Value>,
    /// Free-form JSON object.
    #[serde(default)]
    pub metadata: Option<Value>,
}

impl RawManifest {
    /// The manifest of an agent as stored, for a merge patch (RFC 7396) to edit.
    pub fn of(agent: &Agent) -> Value {
        json!({
            "name": agent.name,
            "description": agent.description,
            "capabilities": agent.capabilities,
            "price": agent.price,
            "limits": agent.limits,
            "argv": agent.argv,
            "env": agent.env,
            "input_schema": agent.input_schema,
            "metadata": agent.metadata,
        })
    }

    /// Reads the seed's registration shape: `{name, description, capabilities[],
    /// pricing: {per_execution, currency}, resources: {memory_limit, timeout}, input_schema?,
    /// metadata?, version?}`. `memory_limit` is bytes or a size such as `"128MB"` / `"64Mi"`,
    /// `timeout` seconds or a duration such as `"30s"` / `"2m"`; prices are in credits.
    pub fn from_seed(value: Value) -> Result<Self, ManifestError> {
        let err = |m: &str| ManifestError(m.to_owned());
        let Value::Object(mut seed) = value else {
            return Err(err("agent must be a JSON object"));
        };
        let mut raw = Map::new();
        for key in [
            "name",
            "description",
            "capabilities",
            "input_schema",
            "metadata",
            "version",
        ] {
            if let Some(v) = seed.remove(key) {
                raw.insert(key.to_owned(), v);
            }
        }
        if let Some(pricing) = seed.remove("pricing") {
            let Value::Object(mut pricing) = pricing else {
                return Err(err("pricing must be an object {per_execution, currency}"));
            };
            if let Some(price) = pricing.remove("per_execution") {
                raw.insert("price".into(), price);
            }
            match pricing.remove("currency") {
                None | Some(Value::Null) => {}
                Some(Value::String(c)) if c.eq_ignore_ascii_case("credits") => {}
                Some(other) => {
                    return Err(ManifestError(format!(
                        "pricing.currency {other} is not supported: prices and budgets are in credits"
                    )));
                }
            }
            if let Some(key) = pricing.keys().next() {
                return Err(ManifestError(format!("unknown field `pricing.{key}`")));
            }
        }
        if let Some(resources) = seed.remove("resources") {
            let Value::Object(mut resources) = resources else {
                return Err(err("resources must be an object {memory_limit, timeout}"));
            };
            let mut limits = Map::new();
            if let Some(m) = resources.remove("memory_limit") {
                let bytes = parse_size(&m).ok_or_else(|| {
                    ManifestError(format!(
                        "resources.memory_limit {m} is not a size (bytes, or e.g. \"128MB\")"
                    ))
                })?;
                limits.insert("memory_bytes".into(), bytes.into());
            }
            if let Some(t) = resources.remove("timeout") {
                let secs = parse_seconds(&t).ok_or_else(|| {
                    ManifestError(format!(
                        "resources.timeout {t} is not a duration (seconds, or e.g. \"30s\")"
                    ))
                })?;
                limits.insert("timeout_secs".into(), secs.into());
            }
            if let Some(key) = resources.keys().next() {
                return Err(ManifestError(format!("unknown field `resources.{key}`")));
            }
            raw.insert("limits".into(), Value::Object(limits));
        }
        if let Some(key) = seed.keys().next() {
            return Err(ManifestError(format!("unknown field `{key}` in agent")));
        }
        serde_json::from_value(Value::Object(raw))
            .map_err(|e| ManifestError(format!("agent is not valid: {e}")))
    }
}

/// Bytes from a number or a string with a unit (`KB`/`MB`/`GB` are powers of 1000, `Ki`/
/// `Mi`/`Gi` and `KiB`… powers of 1024).
fn parse_size(v: &Value) -> Option<u64> {
    parse_quantity(
        v,
        &[
            ("", 1),
            ("b", 1),
            ("k", 1_000),
            ("kb", 1_000),
            ("m", 1_000_000),
            ("mb", 1_000_000),
            ("g", 1_000_000_000),
            ("gb", 1_000_000_000),
            ("ki", 1 << 10),
            ("kib", 1 << 10),
            ("mi", 1 << 20),
            ("mib", 1 << 20),
            ("gi", 1 << 30),
            ("gib", 1 << 30),
        ],
    )
}

/// Seconds from a number or a string such as `"30s"`, `"2m"`, `"1h"`.
fn parse_seconds(v: &Value) -> Option<u64> {
    parse_quantity(v, &[("", 1), ("s", 1), ("m", 60), ("h", 3600)])
}

/// A whole number, or a string of digits and a unit from `units` (lowercase; matched
/// case-insensitively) times the unit's factor.
fn parse_quantity(v: &Value, units: &[(&str, u64)]) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let s = v.as_str()?.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let &(_, factor) = units.iter().find(|(u, _)| *u == unit)?;
    n.checked_mul(factor)
}

/// Largest `input_schema` and `metadata`, encoded.
const MAX_SCHEMA_BYTES: usize = 64 * 1024;
const MAX_METADATA_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

const MAX_NAME: usize = 64;
const MAX_DESCRIPTION: usize = 4000;
const MAX_CAPABILITIES: usize = 32;
const MAX_CAPABILITY: usize = 64;
const MAX_PRICE: f64 = 1_000_000.0;
const MAX_ARGS: usize = 64;
const MAX_VARS: usize = 64;
const MAX_ARG_BYTES: usize = 4096;
/// Prefix of the variables the runtime sets; a manifest cannot set or shadow them.
pub const RESERVED_ENV_PREFIX: &str = "ZEROSTATE_";

impl Manifest {
    /// Checks `raw`; its limits must be within `max`.
    pub fn parse(raw: RawManifest, max: &LimitSettings) -> Result<Self, ManifestError> {
        let err = |m: String| Err(ManifestError(m));
        let name = raw.name.unwrap_or_default().trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return err(format!(
                "name is required and must be at most {MAX_NAME} characters"
            ));
        }
        if name.chars().any(|c| c.is_control()) {
            return err("name must not contain control characters".into());
        }
        let description = raw.description.unwrap_or_default().trim().to_owned();
        if description.chars().count() > MAX_DESCRIPTION {
            return err(format!(
                "description must be at most {MAX_DESCRIPTION} characters"
            ));
        }
        let version = raw
            .version
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        let version = version.unwrap_or_else(|| "1.0.0".into());
        if !is_semver(&version) {
            return err(format!(
                "version `{version}` is not semver (MAJOR.MINOR.PATCH)"
            ));
        }
        let capabilities = parse_capabilities(raw.capabilities.iter().map(String::as_str))?;
        if capabilities.is_empty() {
            return err("at least one capability is required".into());
        }
        let price = raw.price.unwrap_or(0.0);
        if !price.is_finite() || !(0.0..=MAX_PRICE).contains(&price) {
            return err(format!("price must be a number between 0 and {MAX_PRICE}"));
        }
        check_limits(&raw.limits, max)?;
        check_args(&raw.argv, &raw.env)?;
        let input_schema = match raw.input_schema {
            None | Some(Value::Null) => None,
            Some(schema @ (Value::Object(_) | Value::Bool(_))) => {
                if serde_json::to_vec(&schema).map_or(0, |v| v.len()) > MAX_SCHEMA_BYTES {
                    return err(format!(
                        "input_schema must be at most {MAX_SCHEMA_BYTES} bytes"
                    ));
                }
                Some(schema)
            }
            Some(_) => return err("input_schema must be a JSON Schema object".into()),
        };
        let metadata = match raw.metadata {
            None | Some(Value::Null) => None,
            Some(m @ Value::Object(_)) => {
                if serde_json::to_vec(&m).map_or(0, |v| v.len()) > MAX_METADATA_BYTES {
                    return err(format!(
                        "metadata must be at most {MAX_METADATA_BYTES} bytes"
                    ));
                }
                Some(m)
            }
            Some(_) => return err("metadata must be a JSON object".into()),
        };
        Ok(Self {
            name,
            description,
            version,
            capabilities,
            price,
            limits: raw.limits,
            argv: raw.argv,
            env: raw.env,
            input_schema,
            metadata,
        })
    }
}

fn check_limits(limits: &Limits, max: &LimitSettings) -> Result<(), ManifestError> {
    let rules = [
        (
            "memory_bytes",
            limits.memory_bytes,
            64 * 1024,
            max.max_memory_bytes,
            "limits.max_memory_bytes",
        ),
        (
            "timeout_secs",
            limits.timeout_secs,
            1,
            max.max_timeout_secs,
            "limits.max_timeout_secs",
        ),
        (
            "stdin_bytes",
            limits.stdin_bytes,
            0,
            max.max_stdin_bytes,
            "limits.max_stdin_bytes",
        ),
        (
            "stdout_bytes",
            limits.stdout_bytes,
            0,
            max.max_stdout_bytes,
            "limits.max_stdout_bytes",
        ),
        (
            "stderr_bytes",
            limits.stderr_bytes,
            0,
            max.max_stderr_bytes,
            "limits.max_stderr_bytes",
        ),
        ("fuel", limits.fuel, 1, u64::MAX, ""),
    ];
    for (name, value, min, max, setting) in rules {
        match value {
            Some(v) if v < min => {
                return Err(ManifestError(format!(
                    "limits.{name} must be at least {min}"
                )));
            }
            Some(v) if v > max => {
                return Err(ManifestError(format!(
                    "limits.{name} is {v}; this server allows at most {max} ({setting})"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_args(argv: &[String], env: &BTreeMap<String, String>) -> Result<(), ManifestError> {
    let err = |m: String| Err(ManifestError(m));
    if argv.len() > MAX_ARGS || env.len() > MAX_VARS {
        return err(format!(
            "at most {MAX_ARGS} argv entries and {MAX_VARS} env variables are allowed"
        ));
    }
    for arg in argv {
        if arg.len() > MAX_ARG_BYTES || arg.contains('\0') {
            return err(format!(
                "argv entries must be at most {MAX_ARG_BYTES} bytes without NUL characters"
            ));
        }
    }
    for (key, value) in env {
        let mut chars = key.chars();
        let well_formed = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed || key.len() > 128 {
            return err(format!(
                "env name `{key}` must be letters, digits and '_', not starting with a digit"
            ));
        }
        if key.to_ascii_uppercase().starts_with(RESERVED_ENV_PREFIX) {
            return err(format!(
                "env name `{key}`: the {RESERVED_ENV_PREFIX} prefix is reserved for the runtime"
            ));
        }
        if value.len() > MAX_ARG_BYTES || value.contains('\0') {
            return err(format!(
                "env `{key}` must be at most {MAX_ARG_BYTES} bytes without NUL characters"
            ));
        }
    }
    Ok(())
}

/// Splits comma-separated entries, trims, lowercases, drops duplicates and empties, and checks
/// each capability's syntax and the count. Shared by manifests and task submissions.
pub fn parse_capabilities<'a>(
    raw: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, ManifestError> {
    let mut capabilities: Vec<String> = Vec::new();
    for cap in raw.into_iter().flat_map(|c| c.split(',')) {
        let cap = cap.trim().to_lowercase();
        if cap.is_empty() || capabilities.contains(&cap) {
            continue;
        }
        if cap.len() > MAX_CAPABILITY
            || !cap
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(ManifestError(format!(
                "capability `{cap}` must be at most {MAX_CAPABILITY} characters of a-z, 0-9, '-', '_' or '.'"
            )));
        }
        if capabilities.len() == MAX_CAPABILITIES {
            return Err(ManifestError(format!(
                "at most {MAX_CAPABILITIES} capabilities are allowed"
            )));
        }
        capabilities.push(cap);
    }
    Ok(capabilities)
}

/// MAJOR.MINOR.PATCH with optional `-pre` / `+build` suffixes.
pub fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 9
                && p.chars().all(|c| c.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
        && v.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(caps: &[&str]) -> RawManifest {
        RawManifest {
            name: Some(" Echo ".into()),
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn parse(raw: RawManifest) -> Result<Manifest, ManifestError> {
        Manifest::parse(raw, &crate::config::Settings::default().limits)
    }

    #[test]
    fn capabilities_accept_repeated_and_comma_separated_forms() {
        let m = parse(raw(&["Text, nlp", "text", "sentiment-analysis"])).unwrap();
        assert_eq!(m.capabilities, ["text", "nlp", "sentiment-analysis"]);
        assert_eq!(
            (m.name.as_str(), m.version.as_str(), m.price),
            ("Echo", "1.0.0", 0.0)
        );
    }

    #[test]
    fn bad_manifests_name_the_problem() {
        assert!(parse(raw(&[])).unwrap_err().0.contains("capability"));
        assert!(parse(raw(&["a b"])).unwrap_err().0.contains("a b"));
        let mut r = raw(&["x"]);
        r.price = Some(-1.0);
        assert!(parse(r).unwrap_err().0.contains("price"));
        let mut r = raw(&["x"]);
        r.version = Some("1.2".into());
        assert!(parse(r).unwrap_err().0.contains("semver"));
        let mut r = raw(&["x"]);
        r.name = Some("  ".into());
        assert!(parse(r).unwrap_err().0.contains("name"));
    }

    #[test]
    fn limits_argv_and_env_are_checked_against_the_server() {
        let json = r#"{"name": "A", "capabilities": ["x"], "argv": ["--fast"],
            "env": {"MODE": "strict"}, "limits": {"memory_bytes": 1048576, "timeout_secs": 5}}"#;
        let m = parse(serde_json::from_str(json).unwrap()).unwrap();
        assert_eq!(
            (m.limits.memory_bytes, m.limits.timeout_secs),
            (Some(1 << 20), Some(5))
        );
        assert_eq!(
            (m.argv, m.env["MODE"].as_str()),
            (vec!["--fast".to_owned()], "strict")
        );

        let refused = [
            (r#"{"memory_bytes": 2147483648}"#, "limits.max_memory_bytes"),
            (r#"{"timeout_secs": 301}"#, "at most 300"),
            (r#"{"timeout_secs": 0}"#, "at least 1"),
            (r#"{"stdout_bytes": 2097152}"#, "limits.max_stdout_bytes"),
        ];
        for (limits, expected) in refused {
            let mut r = raw(&["x"]);
            r.limits = serde_json::from_str(limits).unwrap();
            let e = parse(r).unwrap_err().0;
            assert!(e.contains(expected), "{limits}: {e}");
        }
        for key in ["ZEROSTATE_TASK_ID", "zerostate_x", "1X", "A-B", ""] {
            let mut r = raw(&["x"]);
            r.env.insert(key.into(), "v".into());
            assert!(parse(r).is_err(), "{key}");
        }
        let unknown = serde_json::from_str::<RawManifest>(r#"{"name": "A", "limit": {}}"#);
        assert!(unknown.unwrap_err().to_string().contains("limit"));
    }

    #[test]
    fn the_seed_registration_shape_maps_onto_the_manifest() {
        let seed = json!({
            "name": "Sentiment-Analyzer", "description": "Scores text",
            "capabilities": ["nlp"], "pricing": {"per_execution": 0.05, "currency": "credits"},
            "resources": {"memory_limit": "64Mi", "timeout": "30s"},
            "input_schema": {"type": "object"}, "metadata": {"homepage": "https://x"}
        });
        let m = parse(RawManifest::from_seed(seed).unwrap()).unwrap();
        assert_eq!(
            (m.price, m.limits.memory_bytes, m.limits.timeout_secs),
            (0.05, Some(64 << 20), Some(30))
        );
        assert!(m.input_schema.is_some() && m.metadata.is_some());
        for (bad, expected) in [
            (
                json!({"name": "A", "pricing": {"per_execution": 1, "currency": "USD"}}),
                "credits",
            ),
            (
                json!({"name": "A", "resources": {"memory_limit": "lots"}}),
                "memory_limit",
            ),
            (
                json!({"name": "A", "resources": {"cpu": 2}}),
                "resources.cpu",
            ),
            (json!({"name": "A", "owner": "me"}), "owner"),
            (json!([1]), "object"),
        ] {
            let e = RawManifest::from_seed(bad).unwrap_err().0;
            assert!(e.contains(expected), "{e}");
        }
        let mut r = raw(&["x"]);
        r.metadata = Some(json!([1]));
        assert!(parse(r).unwrap_err().0.contains("metadata"));
    }

    #[test]
    fn semver_rules() {
        for ok in ["0.1.0", "1.0.0-beta.1", "10.20.30+build"] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in ["1", "1.0", "01.0.0", "a.b.c", "1..0"] {
            assert!(!is_semver(bad), "{bad}");
        }
    }
}
