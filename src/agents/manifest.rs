//! The agent manifest as uploaded, parsed into checked values.

/// A checked manifest. Construct with [`Manifest::parse`].
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub description: String,
    pub version: String,
    pub capabilities: Vec<String>,
    pub price: f64,
}

/// Raw manifest fields, as they arrive from a form or a JSON file.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct RawManifest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub version: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub price: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

const MAX_NAME: usize = 64;
const MAX_DESCRIPTION: usize = 4000;
const MAX_CAPABILITIES: usize = 32;
const MAX_CAPABILITY: usize = 64;
const MAX_PRICE: f64 = 1_000_000.0;

impl Manifest {
    pub fn parse(raw: RawManifest) -> Result<Self, ManifestError> {
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
        Ok(Self {
            name,
            description,
            version,
            capabilities,
            price,
        })
    }
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
fn is_semver(v: &str) -> bool {
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

    #[test]
    fn capabilities_accept_repeated_and_comma_separated_forms() {
        let m = Manifest::parse(raw(&["Text, nlp", "text", "sentiment-analysis"])).unwrap();
        assert_eq!(m.capabilities, ["text", "nlp", "sentiment-analysis"]);
        assert_eq!(
            (m.name.as_str(), m.version.as_str(), m.price),
            ("Echo", "1.0.0", 0.0)
        );
    }

    #[test]
    fn bad_manifests_name_the_problem() {
        assert!(
            Manifest::parse(raw(&[]))
                .unwrap_err()
                .0
                .contains("capability")
        );
        assert!(
            Manifest::parse(raw(&["a b"]))
                .unwrap_err()
                .0
                .contains("a b")
        );
        let mut r = raw(&["x"]);
        r.price = Some(-1.0);
        assert!(Manifest::parse(r).unwrap_err().0.contains("price"));
        let mut r = raw(&["x"]);
        r.version = Some("1.2".into());
        assert!(Manifest::parse(r).unwrap_err().0.contains("semver"));
        let mut r = raw(&["x"]);
        r.name = Some("  ".into());
        assert!(Manifest::parse(r).unwrap_err().0.contains("name"));
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
