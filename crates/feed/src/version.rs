//! TiKV release versions, as PD reports them for each store, and their order.
//!
//! The client talks only to stores whose version lies in [`Config::store_versions`]; a store
//! outside it (an old store, or one mid-way through a rolling upgrade) is asked again later, as
//! TiCDC does. Versions are semantic versions, `major.minor.patch` with an optional pre-release
//! (`7.1.0-alpha`, ordered before `7.1.0`; its identifiers are ASCII letters, digits and
//! hyphens, as SemVer allows: `7.5.0-alpha-1`) and build metadata (ignored), an optional leading
//! `v`. A store whose version cannot be parsed is refused like a store of an unsupported version
//! (its regions wait, and it is asked again), as TiCDC fails its version check; with
//! `store_versions: None` the version is not looked at.
//!
//! [`Config::store_versions`]: crate::Config::store_versions

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A TiKV version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TikvVersion {
    major: u64,
    minor: u64,
    patch: u64,
    /// The pre-release identifiers (`alpha`, `rc.1`); empty for a release.
    pre: Vec<String>,
}

/// Why a version string is not a version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a version (major.minor.patch[-pre-release][+build])")]
pub struct VersionError(pub String);

impl TikvVersion {
    /// The release `major.minor.patch`.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self { major, minor, patch, pre: Vec::new() }
    }

    /// The same version as a pre-release, such as `7.1.0-alpha`.
    pub fn with_pre_release(mut self, pre: &str) -> Self {
        self.pre = pre.split('.').map(str::to_owned).collect();
        self
    }
}

impl FromStr for TikvVersion {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, VersionError> {
        let invalid = || VersionError(text.to_owned());
        let trimmed = text.trim();
        let bare = trimmed.strip_prefix('v').unwrap_or(trimmed);
        let bare = bare.split_once('+').map_or(bare, |(version, _build)| version);
        let (core, pre) = match bare.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (bare, None),
        };
        let mut numbers = core.split('.').map(|n| match n.parse::<u64>() {
            // Digits only (`parse` takes a sign too).
            Ok(value) if n.bytes().all(|b| b.is_ascii_digit()) => Ok(value),
            _ => Err(invalid()),
        });
        let mut next = || numbers.next().unwrap_or_else(|| Err(invalid()));
        let (major, minor, patch) = (next()?, next()?, next()?);
        if numbers.next().is_some() {
            return Err(invalid());
        }
        let mut version = Self::new(major, minor, patch);
        if let Some(pre) = pre {
            let valid = |id: &str| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            if !pre.split('.').all(valid) {
                return Err(invalid());
            }
            version = version.with_pre_release(pre);
        }
        Ok(version)
    }
}

impl Ord for TikvVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let numbers = |v: &Self| (v.major, v.minor, v.patch);
        numbers(self).cmp(&numbers(other)).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A pre-release comes before its release.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                // Identifier by identifier; when one list is a prefix of the other, the shorter
                // comes first.
                (false, false) => (self.pre.iter().zip(&other.pre))
                    .map(|(a, b)| compare_identifiers(a, b))
                    .find(|order| order.is_ne())
                    .unwrap_or_else(|| self.pre.len().cmp(&other.pre.len())),
            }
        })
    }
}

/// Semantic versioning's order of pre-release identifiers: numeric ones by value and before
/// alphanumeric ones, which compare as ASCII.
fn compare_identifiers(a: &str, b: &str) -> Ordering {
    let numeric =
        |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<u64>().ok()).flatten();
    match (numeric(a), numeric(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

impl PartialOrd for TikvVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for TikvVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre.join("."))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::TikvVersion;

    fn v(text: &str) -> TikvVersion {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn versions_parse_and_order_as_semantic_versions() {
        let ordered = [
            "6.5.12",
            "7.0.0",
            "7.1.0-alpha",
            "7.1.0-alpha.1",
            "7.1.0-alpha-1",
            "7.1.0-beta",
            "7.1.0-rc.2",
            "7.1.0-rc.10",
            "7.1.0",
            "v7.1.1",
            "8.5.0-alpha+build.7",
            "8.5.0",
            "10.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("v8.1.0+abc"), TikvVersion::new(8, 1, 0));
        assert_eq!(v("7.1.0-alpha"), TikvVersion::new(7, 1, 0).with_pre_release("alpha"));
        assert_eq!(v("7.1.0-rc.2").to_string(), "7.1.0-rc.2");
        // Hyphens inside pre-release identifiers (issue 18 item 9).
        assert_eq!(v("7.5.0-alpha-1"), TikvVersion::new(7, 5, 0).with_pre_release("alpha-1"));
        assert_eq!(v("v8.5.0-nightly-2024-12-01+abc").to_string(), "8.5.0-nightly-2024-12-01");
    }

    #[test]
    fn malformed_versions_are_errors() {
        for bad in
            ["", "8", "8.1", "8.1.0.1", "8.x.0", "+8.1.0", "8.1.-0", "8.1.0-", "8.1.0-a..b", "v"]
        {
            assert!(bad.parse::<TikvVersion>().is_err(), "{bad:?} parsed");
        }
    }
}
