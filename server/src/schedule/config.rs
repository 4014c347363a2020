//! Where a volume's retention policy comes from, and the `[schedule]` section
//! of the TOML config file. Four layers, each overriding the fields it sets:
//!
//! ```text
//!   built-in default  <  [schedule]  <  [schedule.volumes.NAME]  <  API/CLI (DATA/schedules.json)
//! ```
//!
//! Layers are patches (every field optional), so `[schedule.volumes.pg]
//! hourly = 48` changes only `pg`'s hourly count and inherits the rest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::policy::RetentionPolicy;

/// The most snapshots one period may keep (a year of hourlies is 8760):
/// a typo like `hourly = 2400000` should fail, not fill the disk slowly.
pub const MAX_KEEP: u32 = 10_000;

/// Some fields of a [`RetentionPolicy`]; absent fields fall through to the
/// layer below.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    /// Take snapshots (pruning runs either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Hourly snapshots to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    /// Daily snapshots to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    /// Weekly snapshots to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    /// Monthly snapshots to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
}

impl PolicyPatch {
    /// True when it sets nothing.
    pub fn is_empty(&self) -> bool {
        *self == PolicyPatch::default()
    }

    /// `base` with this patch's fields put over it.
    pub fn apply(&self, base: RetentionPolicy) -> RetentionPolicy {
        RetentionPolicy {
            enabled: self.enabled.unwrap_or(base.enabled),
            hourly: self.hourly.unwrap_or(base.hourly),
            daily: self.daily.unwrap_or(base.daily),
            weekly: self.weekly.unwrap_or(base.weekly),
            monthly: self.monthly.unwrap_or(base.monthly),
        }
    }

    /// This patch with `newer`'s fields put over it.
    pub fn merged(&self, newer: &PolicyPatch) -> PolicyPatch {
        PolicyPatch {
            enabled: newer.enabled.or(self.enabled),
            hourly: newer.hourly.or(self.hourly),
            daily: newer.daily.or(self.daily),
            weekly: newer.weekly.or(self.weekly),
            monthly: newer.monthly.or(self.monthly),
        }
    }
}

/// The layer a volume's effective policy comes from (the most specific one
/// that sets anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// The built-in default: hourly, keep 24 hourly, 7 daily, 4 weekly.
    Default,
    /// The config file's `[schedule]`.
    Config,
    /// The config file's `[schedule.volumes.NAME]`.
    ConfigVolume,
    /// Set through the API or `clonebd schedule set` (DATA/schedules.json).
    Api,
}

impl PolicySource {
    /// As shown by the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicySource::Default => "default",
            PolicySource::Config => "config",
            PolicySource::ConfigVolume => "config-volume",
            PolicySource::Api => "api",
        }
    }
}

/// A policy that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A count above [`MAX_KEEP`].
    #[error("{field} = {value} is more than the maximum of {max}")]
    TooMany {
        /// `hourly`, `daily`, `weekly` or `monthly`
        field: &'static str,
        /// the value given
        value: u32,
        /// [`MAX_KEEP`]
        max: u32,
    },
    /// An enabled schedule whose snapshots would all be pruned an hour later.
    #[error(
        "an enabled schedule must keep at least one snapshot (hourly, daily, weekly or monthly)"
    )]
    KeepsNothing,
    /// A policy for a name no volume can have.
    #[error("invalid volume name {0:?} in [schedule.volumes]")]
    VolumeName(String),
}

/// Checks an effective policy.
pub fn validate_policy(p: &RetentionPolicy) -> Result<(), PolicyError> {
    for (field, value) in
        [("hourly", p.hourly), ("daily", p.daily), ("weekly", p.weekly), ("monthly", p.monthly)]
    {
        if value > MAX_KEEP {
            return Err(PolicyError::TooMany { field, value, max: MAX_KEEP });
        }
    }
    if p.enabled && p.hourly == 0 && p.daily == 0 && p.weekly == 0 && p.monthly == 0 {
        return Err(PolicyError::KeepsNothing);
    }
    Ok(())
}

/// The `[schedule]` section of the config file.
///
/// ```toml
/// [schedule]
/// hourly = 48            # every field optional; defaults: 24 / 7 / 4 / 0
/// daily = 7
///
/// [schedule.volumes.scratch]
/// enabled = false        # no snapshots of `scratch`
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Take snapshots of every volume (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Hourly snapshots to keep (default 24).
    #[serde(default)]
    pub hourly: Option<u32>,
    /// Daily snapshots to keep (default 7).
    #[serde(default)]
    pub daily: Option<u32>,
    /// Weekly snapshots to keep (default 4).
    #[serde(default)]
    pub weekly: Option<u32>,
    /// Monthly snapshots to keep (default 0).
    #[serde(default)]
    pub monthly: Option<u32>,
    /// Per-volume overrides, `[schedule.volumes.NAME]`.
    #[serde(default)]
    pub volumes: BTreeMap<String, PolicyPatch>,
}

impl ScheduleConfig {
    /// The global section as a patch over the built-in default.
    pub fn global(&self) -> PolicyPatch {
        PolicyPatch {
            enabled: self.enabled,
            hourly: self.hourly,
            daily: self.daily,
            weekly: self.weekly,
            monthly: self.monthly,
        }
    }

    /// The effective policy of `volume` given its API layer, and the most
    /// specific layer that set anything.
    pub fn resolve(
        &self,
        volume: &str,
        api: Option<&PolicyPatch>,
    ) -> (RetentionPolicy, PolicySource) {
        let mut policy = RetentionPolicy::default();
        let mut source = PolicySource::Default;
        let global = self.global();
        let layers = [
            (Some(&global), PolicySource::Config),
            (self.volumes.get(volume), PolicySource::ConfigVolume),
            (api, PolicySource::Api),
        ];
        for (patch, layer) in layers {
            if let Some(patch) = patch.filter(|p| !p.is_empty()) {
                policy = patch.apply(policy);
                source = layer;
            }
        }
        (policy, source)
    }

    /// Checks the global policy and every volume's as the file makes them.
    pub fn validate(&self) -> Result<(), PolicyError> {
        validate_policy(&self.resolve("", None).0)?;
        for name in self.volumes.keys() {
            if !valid_volume_name(name) {
                return Err(PolicyError::VolumeName(name.clone()));
            }
            validate_policy(&self.resolve(name, None).0)?;
        }
        Ok(())
    }
}

/// The store's rule for names, `[A-Za-z0-9][A-Za-z0-9._:-]{0,127}`.
fn valid_volume_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ScheduleConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn layers_override_field_by_field() {
        let config = parse(
            "hourly = 48\ndaily = 3\n[volumes.pg]\ndaily = 14\n[volumes.scratch]\nenabled = false\n",
        )
        .unwrap();
        config.validate().unwrap();
        let (p, src) = config.resolve("other", None);
        assert_eq!(src, PolicySource::Config);
        assert_eq!(
            p,
            RetentionPolicy { enabled: true, hourly: 48, daily: 3, weekly: 4, monthly: 0 }
        );
        let (p, src) = config.resolve("pg", None);
        assert_eq!(src, PolicySource::ConfigVolume);
        assert_eq!((p.hourly, p.daily, p.weekly), (48, 14, 4));
        let api = PolicyPatch { monthly: Some(6), ..PolicyPatch::default() };
        let (p, src) = config.resolve("pg", Some(&api));
        assert_eq!(src, PolicySource::Api);
        assert_eq!((p.hourly, p.daily, p.monthly), (48, 14, 6));
        assert!(!config.resolve("scratch", None).0.enabled);
    }

    #[test]
    fn nothing_set_is_the_builtin_default() {
        let config = ScheduleConfig::default();
        assert_eq!(config.resolve("pg", None), (RetentionPolicy::default(), PolicySource::Default));
        let empty = PolicyPatch::default();
        assert_eq!(config.resolve("pg", Some(&empty)).1, PolicySource::Default);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let err = parse("hourli = 3").unwrap_err();
        assert!(err.to_string().contains("hourli"), "{err}");
        let err = parse("[volumes.pg]\nweekly = -1").unwrap_err();
        assert!(err.to_string().contains("weekly") || err.to_string().contains("-1"), "{err}");
        let config = parse("hourly = 20000").unwrap();
        assert!(matches!(config.validate(), Err(PolicyError::TooMany { field: "hourly", .. })));
        let config = parse("hourly = 0\ndaily = 0\nweekly = 0").unwrap();
        assert_eq!(config.validate(), Err(PolicyError::KeepsNothing));
        // Keeping nothing is fine when nothing is taken.
        parse("enabled = false\nhourly = 0\ndaily = 0\nweekly = 0").unwrap().validate().unwrap();
        let config = parse("[volumes.\"a@b\"]\nhourly = 1").unwrap();
        assert!(matches!(config.validate(), Err(PolicyError::VolumeName(_))));
    }

    #[test]
    fn merged_patches_keep_earlier_fields() {
        let a = PolicyPatch { hourly: Some(48), ..PolicyPatch::default() };
        let b = PolicyPatch { daily: Some(3), hourly: Some(12), ..PolicyPatch::default() };
        let m = a.merged(&b);
        assert_eq!((m.hourly, m.daily, m.weekly), (Some(12), Some(3), None));
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"hourly":12,"daily":3}"#);
    }
}
