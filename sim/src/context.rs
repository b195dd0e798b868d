//! Contexts: the typed, serialisable parameters that make one instance of the twin.
//!
//! A context fixes the room, its obstacles, its textures and light, the wind, the
//! sensor noise and the vehicle's mass and drag. Curricula (SPaCE and its baselines)
//! order and sample these, so every field has a documented allowed range, and files
//! that break a range, use an unknown key, hold NaN or pack more obstacles into a
//! room than fit are refused with an error that names the key and the range.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use thiserror::Error;

/// Why a context or an instance set was refused.
#[derive(Debug, Error, PartialEq)]
pub enum ContextError {
    /// The file could not be read.
    #[error("cannot read context file {path}: {reason}")]
    Io { path: String, reason: String },
    /// The TOML did not parse, or named a key that does not exist.
    #[error("malformed context file{where_}: {reason}")]
    Parse { where_: String, reason: String },
    /// A field is NaN or infinite.
    #[error("context '{name}': `{key}` is {value}, it must be a finite number in [{min}, {max}]")]
    NotFinite {
        name: String,
        key: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    /// A field lies outside its allowed range.
    #[error("context '{name}': `{key}` = {value} is outside the allowed range [{min}, {max}]")]
    OutOfRange {
        name: String,
        key: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    /// The obstacles do not fit in the room.
    #[error(
        "context '{name}': room too small for its obstacles: `obstacle_count` = {count} obstacles of \
         `obstacle_size` = {size} m need {need:.1} m² but `room_length` x `room_width` leaves {have:.1} m² \
         (at most {max_count} obstacles of that size fit; allowed `obstacle_size` is at most {max_size:.2} m \
         for this room)"
    )]
    RoomTooSmall {
        name: String,
        count: u32,
        size: f64,
        need: f64,
        have: f64,
        max_count: u32,
        max_size: f64,
    },
    /// A key used in a context space is not a context field.
    #[error("unknown context key `{key}`; known keys: {known}")]
    UnknownKey { key: String, known: String },
    /// A sampling range is empty or reaches outside the field's allowed range.
    #[error("range for `{key}` is [{lo}, {hi}]; it must be ordered and inside [{min}, {max}]")]
    BadRange {
        key: String,
        lo: f64,
        hi: f64,
        min: f64,
        max: f64,
    },
    /// An instance set holds no instance.
    #[error("instance set{where_} holds no [[instance]] table")]
    Empty { where_: String },
}

/// One instance of the twin. Missing keys in a file take the defaults below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Context {
    /// Label used in logs and curricula.
    pub name: String,
    /// Room extent along x, the direction of forward flight (m).
    pub room_length: f64,
    /// Room extent along y (m).
    pub room_width: f64,
    /// Room extent along z (m).
    pub room_height: f64,
    /// Number of obstacles placed in the room.
    pub obstacle_count: u32,
    /// Typical horizontal size of an obstacle (m).
    pub obstacle_size: f64,
    /// Texture contrast, 0 (flat grey) to 1 (full swing).
    pub texture_contrast: f64,
    /// Texture spatial frequency (features per metre).
    pub texture_frequency: f64,
    /// Illumination times exposure; 1 is a well-exposed room.
    pub light: f64,
    /// Mean wind speed (m/s), direction drawn from the seed.
    pub wind_mean: f64,
    /// Standard deviation of wind gusts (m/s).
    pub wind_gust: f64,
    /// Standard deviation of image noise (grey levels of 255).
    pub pixel_noise: f64,
    /// Multiplier of the IMU's nominal noise and bias.
    pub imu_noise: f64,
    /// Vehicle mass (kg).
    pub mass: f64,
    /// Linear aerodynamic drag coefficient (N per m/s of airspeed).
    pub drag: f64,
    /// Width of the doorway in a wall across the room halfway down it (m);
    /// 0: no wall. The wall spans floor to ceiling.
    pub gate_width: f64,
    /// Where the doorway is across the room: −1 at the right wall, 0 in the
    /// middle, 1 at the left wall (the opening stays inside the room).
    pub gate_offset: f64,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            name: "default".to_string(),
            room_length: 20.0,
            room_width: 8.0,
            room_height: 3.0,
            obstacle_count: 12,
            obstacle_size: 0.6,
            texture_contrast: 0.7,
            texture_frequency: 4.0,
            light: 1.0,
            wind_mean: 0.0,
            wind_gust: 0.0,
            pixel_noise: 2.0,
            imu_noise: 1.0,
            mass: 0.5,
            drag: 0.1,
            gate_width: 0.0,
            gate_offset: 0.0,
        }
    }
}

/// Allowed range and meaning of one numeric context field.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    /// The TOML key.
    pub key: &'static str,
    /// Smallest allowed value.
    pub min: f64,
    /// Largest allowed value.
    pub max: f64,
}

/// Every numeric field with its allowed range, in a fixed order (also the order of
/// [`Context::to_vector`]).
pub const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        key: "room_length",
        min: 4.0,
        max: 100.0,
    },
    FieldSpec {
        key: "room_width",
        min: 2.0,
        max: 50.0,
    },
    FieldSpec {
        key: "room_height",
        min: 1.5,
        max: 15.0,
    },
    FieldSpec {
        key: "obstacle_count",
        min: 0.0,
        max: 200.0,
    },
    FieldSpec {
        key: "obstacle_size",
        min: 0.05,
        max: 4.0,
    },
    FieldSpec {
        key: "texture_contrast",
        min: 0.0,
        max: 1.0,
    },
    FieldSpec {
        key: "texture_frequency",
        min: 0.1,
        max: 40.0,
    },
    FieldSpec {
        key: "light",
        min: 0.05,
        max: 4.0,
    },
    FieldSpec {
        key: "wind_mean",
        min: 0.0,
        max: 15.0,
    },
    FieldSpec {
        key: "wind_gust",
        min: 0.0,
        max: 8.0,
    },
    FieldSpec {
        key: "pixel_noise",
        min: 0.0,
        max: 40.0,
    },
    FieldSpec {
        key: "imu_noise",
        min: 0.0,
        max: 20.0,
    },
    FieldSpec {
        key: "mass",
        min: 0.05,
        max: 20.0,
    },
    FieldSpec {
        key: "drag",
        min: 0.0,
        max: 5.0,
    },
    FieldSpec {
        key: "gate_width",
        min: 0.0,
        max: 50.0,
    },
    FieldSpec {
        key: "gate_offset",
        min: -1.0,
        max: 1.0,
    },
];

/// Clear length kept free of obstacles at the start of the room (m).
pub const START_CLEARANCE: f64 = 2.0;
/// Fraction of the free floor that obstacles may cover at most.
pub const MAX_FLOOR_COVER: f64 = 0.3;

fn spec(key: &str) -> Option<&'static FieldSpec> {
    FIELDS.iter().find(|f| f.key == key)
}

fn known_keys() -> String {
    FIELDS.iter().map(|f| f.key).collect::<Vec<_>>().join(", ")
}

impl Context {
    /// The value of numeric field `key`, if it exists.
    pub fn get(&self, key: &str) -> Option<f64> {
        Some(match key {
            "room_length" => self.room_length,
            "room_width" => self.room_width,
            "room_height" => self.room_height,
            "obstacle_count" => self.obstacle_count as f64,
            "obstacle_size" => self.obstacle_size,
            "texture_contrast" => self.texture_contrast,
            "texture_frequency" => self.texture_frequency,
            "light" => self.light,
            "wind_mean" => self.wind_mean,
            "wind_gust" => self.wind_gust,
            "pixel_noise" => self.pixel_noise,
            "imu_noise" => self.imu_noise,
            "mass" => self.mass,
            "drag" => self.drag,
            "gate_width" => self.gate_width,
            "gate_offset" => self.gate_offset,
            _ => return None,
        })
    }

    /// Set numeric field `key` (counts are rounded). Returns false for an unknown key.
    pub fn set(&mut self, key: &str, v: f64) -> bool {
        match key {
            "room_length" => self.room_length = v,
            "room_width" => self.room_width = v,
            "room_height" => self.room_height = v,
            "obstacle_count" => self.obstacle_count = v.round().max(0.0) as u32,
            "obstacle_size" => self.obstacle_size = v,
            "texture_contrast" => self.texture_contrast = v,
            "texture_frequency" => self.texture_frequency = v,
            "light" => self.light = v,
            "wind_mean" => self.wind_mean = v,
            "wind_gust" => self.wind_gust = v,
            "pixel_noise" => self.pixel_noise = v,
            "imu_noise" => self.imu_noise = v,
            "mass" => self.mass = v,
            "drag" => self.drag = v,
            "gate_width" => self.gate_width = v,
            "gate_offset" => self.gate_offset = v,
            _ => return false,
        }
        true
    }

    /// Check every field against its range, and the obstacles against the room.
    pub fn validate(&self) -> Result<(), ContextError> {
        for f in FIELDS {
            let value = self.get(f.key).unwrap_or(f64::NAN);
            if !value.is_finite() {
                return Err(ContextError::NotFinite {
                    name: self.name.clone(),
                    key: f.key,
                    value,
                    min: f.min,
                    max: f.max,
                });
            }
            if value < f.min || value > f.max {
                return Err(ContextError::OutOfRange {
                    name: self.name.clone(),
                    key: f.key,
                    value,
                    min: f.min,
                    max: f.max,
                });
            }
        }
        if self.gate_width > 0.0 && (self.gate_width < 0.4 || self.gate_width > self.room_width) {
            return Err(ContextError::OutOfRange {
                name: self.name.clone(),
                key: "gate_width",
                value: self.gate_width,
                min: 0.4,
                max: self.room_width,
            });
        }
        if self.gate_width > 0.0 && self.room_length < START_CLEARANCE * 2.0 + 1.0 {
            return Err(ContextError::OutOfRange {
                name: self.name.clone(),
                key: "room_length",
                value: self.room_length,
                min: START_CLEARANCE * 2.0 + 1.0,
                max: 100.0,
            });
        }
        let have = self.free_floor_area() * MAX_FLOOR_COVER;
        let per = self.obstacle_footprint();
        let need = self.obstacle_count as f64 * per;
        let max_size = (self.room_width / 3.0).min((self.room_length - START_CLEARANCE) / 3.0);
        if need > have || (self.obstacle_count > 0 && self.obstacle_size > max_size) {
            return Err(ContextError::RoomTooSmall {
                name: self.name.clone(),
                count: self.obstacle_count,
                size: self.obstacle_size,
                need,
                have,
                max_count: (have / per).floor() as u32,
                max_size,
            });
        }
        Ok(())
    }

    /// Floor area where obstacles may stand (m²).
    pub fn free_floor_area(&self) -> f64 {
        (self.room_length - START_CLEARANCE).max(0.0) * self.room_width
    }

    /// Floor area one obstacle claims, with a margin so that obstacles do not touch (m²).
    pub fn obstacle_footprint(&self) -> f64 {
        let s = self.obstacle_size + 0.3;
        s * s
    }

    /// The numeric fields in [`FIELDS`] order, each scaled to [0, 1] by its range,
    /// for policies and value functions that observe the context.
    pub fn to_vector(&self) -> Vec<f32> {
        FIELDS
            .iter()
            .map(|f| ((self.get(f.key).unwrap_or(f.min) - f.min) / (f.max - f.min)) as f32)
            .collect()
    }

    /// The doorway wall, if any: its x position (m) and the opening's y extent
    /// (m, right edge then left edge).
    pub fn gate(&self) -> Option<(f64, [f64; 2])> {
        if self.gate_width <= 0.0 {
            return None;
        }
        let w = self.gate_width.min(self.room_width);
        let centre = self.gate_offset.clamp(-1.0, 1.0) * (self.room_width - w) * 0.5;
        let x = (self.room_length * 0.5).max(START_CLEARANCE + 1.0);
        Some((x, [centre - w * 0.5, centre + w * 0.5]))
    }

    /// Parse and validate one context from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, ContextError> {
        let c: Context = toml::from_str(text).map_err(|e| ContextError::Parse {
            where_: String::new(),
            reason: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Serialise to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// A list of contexts, stored as `[[instance]]` tables in a TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InstanceSet {
    /// The instances, in file order.
    #[serde(default)]
    pub instance: Vec<Context>,
}

impl InstanceSet {
    /// Parse and validate an instance set; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ContextError> {
        let where_ = if origin.is_empty() {
            String::new()
        } else {
            format!(" {origin}")
        };
        let set: InstanceSet = toml::from_str(text).map_err(|e| ContextError::Parse {
            where_: where_.clone(),
            reason: e.to_string(),
        })?;
        if set.instance.is_empty() {
            return Err(ContextError::Empty { where_ });
        }
        for c in &set.instance {
            c.validate()?;
        }
        Ok(set)
    }

    /// Read and validate an instance-set file.
    pub fn load(path: &Path) -> Result<Self, ContextError> {
        let text = std::fs::read_to_string(path).map_err(|e| ContextError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Serialise to TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// Sampling ranges over context fields; fields not named keep the base context's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ContextSpace {
    /// Values for fields that are not sampled.
    #[serde(default)]
    pub base: Context,
    /// `key = [lo, hi]`, sampled uniformly.
    #[serde(default)]
    pub ranges: BTreeMap<String, [f64; 2]>,
}

impl ContextSpace {
    /// Check that every key exists and every range is ordered and allowed.
    pub fn validate(&self) -> Result<(), ContextError> {
        for (key, [lo, hi]) in &self.ranges {
            let Some(f) = spec(key) else {
                return Err(ContextError::UnknownKey {
                    key: key.clone(),
                    known: known_keys(),
                });
            };
            if !(lo.is_finite() && hi.is_finite() && lo <= hi && *lo >= f.min && *hi <= f.max) {
                return Err(ContextError::BadRange {
                    key: key.clone(),
                    lo: *lo,
                    hi: *hi,
                    min: f.min,
                    max: f.max,
                });
            }
        }
        Ok(())
    }

    /// Parse and validate a context space from TOML (`[base]` and `[ranges]` tables).
    pub fn from_toml_str(text: &str) -> Result<Self, ContextError> {
        let s: ContextSpace = toml::from_str(text).map_err(|e| ContextError::Parse {
            where_: String::new(),
            reason: e.to_string(),
        })?;
        s.validate()?;
        Ok(s)
    }

    /// Draw `n` valid contexts; the same seed gives the same set. Draws that put
    /// too many obstacles in a room are redrawn (up to a limit, then the obstacle
    /// count is reduced to what fits).
    pub fn sample(&self, n: usize, seed: u64) -> Result<InstanceSet, ContextError> {
        self.validate()?;
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let mut c = self.base.clone();
            for attempt in 0..100 {
                c = self.base.clone();
                for (key, [lo, hi]) in &self.ranges {
                    let v = rng.range(*lo, *hi + if key == "obstacle_count" { 1.0 } else { 0.0 });
                    let v = if key == "obstacle_count" {
                        v.floor().min(*hi)
                    } else {
                        v
                    };
                    c.set(key, v);
                }
                if c.validate().is_ok() || attempt == 99 {
                    break;
                }
            }
            if let Err(ContextError::RoomTooSmall { max_count, .. }) = c.validate() {
                c.obstacle_count = max_count;
            }
            c.name = format!("ctx{i:03}");
            c.validate()?;
            out.push(c);
        }
        Ok(InstanceSet { instance: out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_context_is_valid_and_round_trips_through_toml() {
        let c = Context::default();
        c.validate().unwrap();
        let back = Context::from_toml_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.to_vector().len(), FIELDS.len());
        assert!(c.to_vector().iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Context::from_toml_str("room_lenght = 10.0").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("room_lenght"), "{msg}");
        assert!(matches!(e, ContextError::Parse { .. }));
    }

    #[test]
    fn out_of_range_names_key_and_range() {
        let e = Context::from_toml_str("light = 9.0").unwrap_err();
        assert_eq!(
            e,
            ContextError::OutOfRange {
                name: "default".into(),
                key: "light",
                value: 9.0,
                min: 0.05,
                max: 4.0
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("`light`") && msg.contains("[0.05, 4]"),
            "{msg}"
        );
    }

    #[test]
    fn nan_is_refused_with_key() {
        let e = Context::from_toml_str("wind_mean = nan").unwrap_err();
        assert!(
            matches!(
                e,
                ContextError::NotFinite {
                    key: "wind_mean",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("wind_mean"));
    }

    #[test]
    fn room_too_small_is_refused() {
        let e = Context::from_toml_str(
            "room_length = 5.0\nroom_width = 3.0\nobstacle_count = 40\nobstacle_size = 1.0",
        )
        .unwrap_err();
        let ContextError::RoomTooSmall { max_count, .. } = e else {
            panic!("wrong error {e}");
        };
        assert!(max_count < 40);
        assert!(e.to_string().contains("obstacle_count"));
    }

    #[test]
    fn instance_set_parses_and_rejects_bad_members() {
        let ok = "[[instance]]\nname='a'\n[[instance]]\nname='b'\nroom_length=30.0\n";
        let set = InstanceSet::from_toml_str(ok, "x.toml").unwrap();
        assert_eq!(set.instance.len(), 2);
        assert_eq!(set.instance[1].room_length, 30.0);
        let bad = "[[instance]]\nname='a'\n[[instance]]\nname='b'\nmass=-1.0\n";
        let e = InstanceSet::from_toml_str(bad, "x.toml").unwrap_err();
        assert!(e.to_string().contains("'b'") && e.to_string().contains("mass"));
        assert!(matches!(
            InstanceSet::from_toml_str("", "e.toml"),
            Err(ContextError::Empty { .. })
        ));
    }

    #[test]
    fn space_sampling_is_deterministic_valid_and_within_ranges() {
        let text =
            "[ranges]\nobstacle_count = [0, 30]\nroom_length = [8.0, 30.0]\nlight = [0.3, 2.0]\n";
        let space = ContextSpace::from_toml_str(text).unwrap();
        let a = space.sample(50, 3).unwrap();
        let b = space.sample(50, 3).unwrap();
        let c = space.sample(50, 4).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        for ctx in &a.instance {
            ctx.validate().unwrap();
            assert!((8.0..=30.0).contains(&ctx.room_length));
            assert!(ctx.obstacle_count <= 30);
        }
        let bad = ContextSpace::from_toml_str("[ranges]\nfoo = [0.0, 1.0]\n").unwrap_err();
        assert!(bad.to_string().contains("foo"));
        let bad = ContextSpace::from_toml_str("[ranges]\nlight = [0.0, 1.0]\n").unwrap_err();
        assert!(matches!(bad, ContextError::BadRange { .. }));
    }
}
