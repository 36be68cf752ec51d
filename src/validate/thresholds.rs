//! Thresholds: the bounds a machine class must meet, from a file or shipped with
//! tutti, and the fraction of the peers' median below which a rank, pair, link or
//! GPU fails.
//!
//! # File format `tutti-validate-thresholds/1` (TOML)
//!
//! ```toml
//! format = "tutti-validate-thresholds/1"   # required, names this version
//! name = "h200"                            # required: the machine class
//! description = "HGX H200 8-GPU"           # optional
//! gpu_names = ["H200"]                     # optional: auto-selected when NVML reports
//! exclude_gpu_names = ["NVL"]              #   a GPU whose name contains one of these
//!                                          #   and none of the excluded ones
//! relative_fraction = 0.75                 # optional (default 0.75): a peer below
//!                                          #   0.75x the median of its peers fails
//!
//! [min]                                    # value >= bound (inf: must be unlimited)
//! "gpu.h2d_gbps" = 40.0
//! [max]                                    # value <= bound
//! "gpu.ecc_uncorrected_volatile" = 0
//! [require]                                # yes/no properties
//! "gpu.ecc_enabled" = true
//! ```
//!
//! Keys are metric names ([`super::metrics::METRICS`],
//! `tutti validate --list-metrics`); an unknown key, a `require` on a numeric metric
//! or a bound on a flag, an unknown field or another `format` is an error naming it.
//! Shipped classes: `tutti validate --print-thresholds h200` prints one (a template).
//! A new format version is only needed for changes old readers would misread;
//! metrics are added within version 1.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::ValidateError;
use super::metrics::{self, Better};

/// The format version this tutti reads and writes.
pub const FORMAT: &str = "tutti-validate-thresholds/1";

/// The default fraction of the median below which a peer fails.
pub const DEFAULT_FRACTION: f64 = 0.75;

/// The shipped machine classes: (name, file text).
const BUILTIN: &[(&str, &str)] = &[
    ("h100", include_str!("thresholds/h100.toml")),
    ("h200", include_str!("thresholds/h200.toml")),
    ("a100", include_str!("thresholds/a100.toml")),
];

/// Names of the shipped classes.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

/// The file text of shipped class `name`.
pub fn builtin_text(name: &str) -> Option<&'static str> {
    let name = name.trim().to_ascii_lowercase();
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    gpu_names: Vec<String>,
    #[serde(default)]
    exclude_gpu_names: Vec<String>,
    #[serde(default)]
    relative_fraction: Option<f64>,
    #[serde(default)]
    min: BTreeMap<String, f64>,
    #[serde(default)]
    max: BTreeMap<String, f64>,
    #[serde(default)]
    require: BTreeMap<String, bool>,
}

/// A set of bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Class name (`relative` when only the relative rule applies).
    pub name: String,
    /// Where they came from (a path, `class h200 (shipped)`, `built-in`).
    pub source: String,
    /// What the class is.
    pub description: Option<String>,
    /// GPU name substrings that select this class automatically.
    pub gpu_names: Vec<String>,
    /// GPU name substrings that exclude it.
    pub exclude_gpu_names: Vec<String>,
    /// A peer below this fraction of its peers' median fails.
    pub relative_fraction: f64,
    /// Lower bounds by metric.
    pub min: BTreeMap<String, f64>,
    /// Upper bounds by metric.
    pub max: BTreeMap<String, f64>,
    /// Required flag values by metric.
    pub require: BTreeMap<String, bool>,
}

/// The bound applying to one metric.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bound {
    /// Lower bound.
    pub min: Option<f64>,
    /// Upper bound.
    pub max: Option<f64>,
    /// Required flag value.
    pub require: Option<bool>,
}

impl Thresholds {
    /// No absolute bounds: only the relative rule with `fraction`.
    pub fn relative(fraction: f64) -> Thresholds {
        Thresholds {
            name: "relative".into(),
            source: "no thresholds file: peers are compared with their median".into(),
            description: None,
            gpu_names: Vec::new(),
            exclude_gpu_names: Vec::new(),
            relative_fraction: fraction,
            min: BTreeMap::new(),
            max: BTreeMap::new(),
            require: BTreeMap::new(),
        }
    }

    /// Parses the text of a thresholds file; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Thresholds, ValidateError> {
        let bad = |detail: String| ValidateError::Thresholds {
            source_name: source.to_string(),
            detail,
        };
        let f: File = toml::from_str(text).map_err(|e| bad(e.to_string().trim().to_string()))?;
        if f.format.trim() != FORMAT {
            return Err(bad(format!(
                "format {:?} is not {FORMAT:?} (the version this tutti reads)",
                f.format
            )));
        }
        if f.name.trim().is_empty() {
            return Err(bad("name is empty".into()));
        }
        let fraction = f.relative_fraction.unwrap_or(DEFAULT_FRACTION);
        check_fraction(fraction).map_err(|e| bad(format!("relative_fraction: {e}")))?;
        for (table, keys, numeric) in [
            ("min", f.min.keys().collect::<Vec<_>>(), true),
            ("max", f.max.keys().collect(), true),
            ("require", f.require.keys().collect(), false),
        ] {
            for key in keys {
                let m = metrics::find(key).ok_or_else(|| {
                    bad(format!(
                        "[{table}] {key:?} is not a metric (tutti validate --list-metrics lists them)"
                    ))
                })?;
                let flag = m.better == Better::Flag;
                if numeric && flag {
                    return Err(bad(format!(
                        "[{table}] {key:?} is a yes/no metric: put it under [require]"
                    )));
                }
                if !numeric && !flag {
                    return Err(bad(format!(
                        "[require] {key:?} is numeric: give it a [min] or [max] bound"
                    )));
                }
            }
        }
        for (key, v) in f.min.iter().chain(&f.max) {
            if v.is_nan() {
                return Err(bad(format!("{key:?} is NaN")));
            }
        }
        for (key, lo) in &f.min {
            if let Some(hi) = f.max.get(key)
                && lo > hi
            {
                return Err(bad(format!("{key:?}: min {lo} is above max {hi}")));
            }
        }
        Ok(Thresholds {
            name: f.name.trim().to_string(),
            source: source.to_string(),
            description: f.description,
            gpu_names: f.gpu_names,
            exclude_gpu_names: f.exclude_gpu_names,
            relative_fraction: fraction,
            min: f.min,
            max: f.max,
            require: f.require,
        })
    }

    /// Reads a thresholds file.
    pub fn load(path: &Path) -> Result<Thresholds, ValidateError> {
        let text = std::fs::read_to_string(path).map_err(|source| ValidateError::ThresholdsIo {
            path: path.to_path_buf(),
            source,
        })?;
        Thresholds::parse(&text, &path.display().to_string())
    }

    /// A shipped class.
    pub fn builtin(name: &str) -> Result<Thresholds, ValidateError> {
        let text = builtin_text(name).ok_or_else(|| ValidateError::UnknownClass(name.into()))?;
        Thresholds::parse(text, &format!("class {} (shipped with tutti)", name.trim()))
    }

    /// The shipped class that matches GPU model `gpu_name`, if any.
    pub fn for_gpu(gpu_name: &str) -> Option<Thresholds> {
        BUILTIN
            .iter()
            .filter_map(|(n, _)| Thresholds::builtin(n).ok())
            .find(|t| t.matches_gpu(gpu_name))
    }

    /// Whether this class applies to GPU model `gpu_name`.
    pub fn matches_gpu(&self, gpu_name: &str) -> bool {
        let has = |p: &String| {
            gpu_name
                .to_ascii_lowercase()
                .contains(&p.to_ascii_lowercase())
        };
        self.gpu_names.iter().any(has) && !self.exclude_gpu_names.iter().any(has)
    }

    /// The bounds on `metric`.
    pub fn bound(&self, metric: &str) -> Bound {
        Bound {
            min: self.min.get(metric).copied(),
            max: self.max.get(metric).copied(),
            require: self.require.get(metric).copied(),
        }
    }

    /// A short description of where a bound came from.
    pub fn label(&self) -> String {
        match self.name.as_str() {
            "relative" | "built-in" => "built-in".into(),
            name => format!("thresholds {name}"),
        }
    }
}

/// A relative fraction must be in (0, 1].
pub fn check_fraction(f: f64) -> Result<(), String> {
    if f > 0.0 && f <= 1.0 {
        Ok(())
    } else {
        Err(format!("{f} is not in (0, 1]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_classes_parse_and_match_their_gpus() {
        for name in builtin_names() {
            let t = Thresholds::builtin(name).unwrap();
            assert_eq!(t.name, name);
            assert!(!t.min.is_empty());
        }
        assert_eq!(Thresholds::for_gpu("NVIDIA H200").unwrap().name, "h200");
        assert_eq!(
            Thresholds::for_gpu("NVIDIA H100 80GB HBM3").unwrap().name,
            "h100"
        );
        assert_eq!(
            Thresholds::for_gpu("NVIDIA A100-SXM4-80GB").unwrap().name,
            "a100"
        );
        assert!(Thresholds::for_gpu("NVIDIA H100 PCIe").is_none());
        assert!(Thresholds::for_gpu("NVIDIA GeForce RTX 4090").is_none());
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let err = |text: &str| Thresholds::parse(text, "t.toml").unwrap_err().to_string();
        let head = format!("format = \"{FORMAT}\"\nname = \"x\"\n");
        assert!(err("format = \"tutti-validate-thresholds/9\"\nname = \"x\"").contains("is not"));
        assert!(
            err(&format!("{head}[min]\n\"memory.copy_gpbs\" = 1")).contains("memory.copy_gpbs")
        );
        assert!(err(&format!("{head}[min]\n\"gpu.ecc_enabled\" = 1")).contains("[require]"));
        assert!(err(&format!("{head}[require]\n\"gpu.h2d_gbps\" = true")).contains("numeric"));
        assert!(err(&format!("{head}relative_fraction = 1.5")).contains("relative_fraction"));
        assert!(err(&format!("{head}colour = 1")).contains("colour"));
        assert!(
            err(&format!(
                "{head}[min]\n\"gpu.count\" = 8\n[max]\n\"gpu.count\" = 4"
            ))
            .contains("above")
        );
        let ok = Thresholds::parse(
            &format!("{head}[min]\n\"host.memlock_gib\" = inf\n\"memory.copy_gbps\" = 5"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(ok.bound("host.memlock_gib").min, Some(f64::INFINITY));
        assert_eq!(ok.relative_fraction, DEFAULT_FRACTION);
    }
}
