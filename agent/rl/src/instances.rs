//! Instance files: which task, and the training and held-out test instances
//! (listed, or drawn from ranges with a seed), checked key by key.
//!
//! ```toml
//! task = "twin"              # cartpole | pendulum | twin
//! config = "../config/twin_ppo.toml"  # optional: tuned settings (relative to this file)
//! observe_context = true     # append the normalised context to observations
//! actions = "discrete"       # twin only: discrete | continuous
//! control_hz = 10.0          # twin only: decisions per second (default 30)
//! reward = "progress"        # twin only: progress | sparse (outcome only)
//! max_steps = 150            # twin only: episode limit in decisions
//!
//! [sample]                   # optional: draw instances from ranges
//! seed = 0
//! train = 40
//! test = 20
//! [sample.base]              # fields not sampled
//! room_length = 16.0
//! [sample.ranges]            # key = [lo, hi], uniform
//! obstacle_count = [0, 30]
//!
//! [[train]]                  # optional: listed instances (after the sampled ones)
//! name = "empty"
//! obstacle_count = 0
//! [[test]]
//! obstacle_count = 25
//! ```

use crate::RlError;
use crate::env::{CartPoleEnv, Environment, PendulumEnv, TwinAvoidEnv};
use serde::de::DeserializeOwned;
use sim::classic::{CartPoleContext, PendulumContext};
use sim::rng::Rng;
use sim::{Context, ContextSpace};
use std::collections::BTreeMap;
use std::path::Path;

/// The task family of an instance file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Contextual cart-pole (discrete).
    CartPole,
    /// Contextual pendulum (continuous).
    Pendulum,
    /// The twin's obstacle-avoidance flight.
    Twin,
}

/// The instances of one split.
#[derive(Debug, Clone, PartialEq)]
pub enum Instances {
    /// Cart-pole contexts.
    CartPole(Vec<CartPoleContext>),
    /// Pendulum contexts.
    Pendulum(Vec<PendulumContext>),
    /// Twin contexts.
    Twin(Vec<Context>),
}

impl Instances {
    /// Number of instances.
    pub fn len(&self) -> usize {
        match self {
            Instances::CartPole(v) => v.len(),
            Instances::Pendulum(v) => v.len(),
            Instances::Twin(v) => v.len(),
        }
    }

    /// No instance.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Instance names, in order.
    pub fn names(&self) -> Vec<String> {
        match self {
            Instances::CartPole(v) => v.iter().map(|c| c.name.clone()).collect(),
            Instances::Pendulum(v) => v.iter().map(|c| c.name.clone()).collect(),
            Instances::Twin(v) => v.iter().map(|c| c.name.clone()).collect(),
        }
    }
}

/// The `[sample]` block of an instance file.
struct Sampling {
    seed: u64,
    train: usize,
    test: usize,
    base: toml::Table,
    ranges: BTreeMap<String, [f64; 2]>,
}

/// A parsed and checked instance file.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceFile {
    /// The task family.
    pub task: TaskKind,
    /// The context is appended to observations.
    pub observe_context: bool,
    /// Twin: continuous actions instead of discrete.
    pub continuous: bool,
    /// Twin: steps (decisions) per episode.
    pub max_steps: u32,
    /// Twin: decisions per second.
    pub control_hz: f64,
    /// Twin: reward only the outcome (far end, collision), not progress.
    pub sparse_reward: bool,
    /// Training settings tuned for this family (`config = "FILE"`, relative to
    /// the instance file), used when the command line names none.
    pub config: Option<std::path::PathBuf>,
    /// Instances trained on (the only ones a curriculum ranks).
    pub train: Instances,
    /// Held-out instances, evaluated only.
    pub test: Instances,
}

fn err(origin: &str, msg: impl std::fmt::Display) -> RlError {
    RlError::Config(format!("instance file {origin}: {msg}"))
}

fn parse_list<T: DeserializeOwned>(
    v: Option<&toml::Value>,
    origin: &str,
    split: &str,
) -> Result<Vec<T>, RlError> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let arr = v.as_array().ok_or_else(|| {
        err(
            origin,
            format!("`{split}` must be a list of [[{split}]] tables"),
        )
    })?;
    arr.iter()
        .enumerate()
        .map(|(i, item)| {
            item.clone()
                .try_into()
                .map_err(|e| err(origin, format!("[[{split}]] #{}: {e}", i + 1)))
        })
        .collect()
}

/// Draw `n` instances of a classic task: `base` with each ranged key uniform in its range.
fn sample_classic<T: DeserializeOwned>(
    base: &toml::Table,
    ranges: &BTreeMap<String, [f64; 2]>,
    n: usize,
    rng: &mut Rng,
    origin: &str,
) -> Result<Vec<T>, RlError> {
    for (k, [lo, hi]) in ranges {
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(err(
                origin,
                format!("range of `{k}` is [{lo}, {hi}]; it must be finite and ordered"),
            ));
        }
    }
    (0..n)
        .map(|_| {
            let mut t = base.clone();
            for (k, [lo, hi]) in ranges {
                t.insert(k.clone(), toml::Value::Float(rng.range(*lo, *hi)));
            }
            toml::Value::Table(t)
                .try_into()
                .map_err(|e| err(origin, format!("[sample]: {e}")))
        })
        .collect()
}

/// Train and test instances of a classic task drawn from the `[sample]` block.
fn sample_split<C: DeserializeOwned>(
    sampled: Option<&Sampling>,
    origin: &str,
) -> Result<(Vec<C>, Vec<C>), RlError> {
    let Some(smp) = sampled else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut rng = Rng::new(smp.seed);
    let tr = sample_classic::<C>(&smp.base, &smp.ranges, smp.train, &mut rng, origin)?;
    let te = sample_classic::<C>(&smp.base, &smp.ranges, smp.test, &mut rng, origin)?;
    Ok((tr, te))
}

/// Add the listed `[[train]]` / `[[test]]` instances to the sampled ones, check
/// every one and name the unnamed.
fn complete<C: DeserializeOwned, E: std::fmt::Display>(
    mut tr: Vec<C>,
    mut te: Vec<C>,
    table: &toml::Table,
    origin: &str,
    check: impl Fn(&C) -> Result<(), E>,
    name: impl Fn(&mut C) -> &mut String + Copy,
) -> Result<(Vec<C>, Vec<C>), RlError> {
    tr.extend(parse_list::<C>(table.get("train"), origin, "train")?);
    te.extend(parse_list::<C>(table.get("test"), origin, "test")?);
    for c in tr.iter().chain(&te) {
        check(c).map_err(|e| err(origin, e))?;
    }
    name_all(&mut tr, "train", name);
    name_all(&mut te, "test", name);
    Ok((tr, te))
}

fn name_all<T>(items: &mut [T], prefix: &str, name: impl Fn(&mut T) -> &mut String) {
    for (i, it) in items.iter_mut().enumerate() {
        let n = name(it);
        if n.is_empty() || n == "default" || n.starts_with("ctx") {
            *n = format!("{prefix}{i:03}");
        }
    }
}

impl InstanceFile {
    /// Parse and check an instance file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, RlError> {
        let table: toml::Table = text.parse().map_err(|e| err(origin, e))?;
        const KEYS: [&str; 10] = [
            "reward",
            "task",
            "config",
            "observe_context",
            "actions",
            "max_steps",
            "control_hz",
            "sample",
            "train",
            "test",
        ];
        if let Some(k) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(err(
                origin,
                format!("unknown key `{k}`; known keys: {}", KEYS.join(", ")),
            ));
        }
        let task = match table.get("task").and_then(|v| v.as_str()) {
            Some("cartpole") => TaskKind::CartPole,
            Some("pendulum") => TaskKind::Pendulum,
            Some("twin") => TaskKind::Twin,
            other => {
                return Err(err(
                    origin,
                    format!(
                        "`task` is {other:?}; it must be \"cartpole\", \"pendulum\" or \"twin\""
                    ),
                ));
            }
        };
        let observe_context = match table.get("observe_context") {
            None => true,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| err(origin, "`observe_context` must be true or false"))?,
        };
        if task != TaskKind::Twin
            && let Some(k) = ["actions", "control_hz", "reward"]
                .into_iter()
                .find(|k| table.contains_key(*k))
        {
            return Err(err(origin, format!("`{k}` applies to the twin task only")));
        }
        let continuous = match table.get("actions").map(|v| v.as_str()) {
            None | Some(Some("discrete")) => false,
            Some(Some("continuous")) => true,
            Some(_) => {
                return Err(err(
                    origin,
                    "`actions` must be \"discrete\" or \"continuous\"",
                ));
            }
        };
        let max_steps = match table.get("max_steps") {
            None => 450,
            Some(v) => match v.as_integer() {
                Some(n) if (10..=100_000).contains(&n) => n as u32,
                _ => {
                    return Err(err(
                        origin,
                        "`max_steps` must be an integer in [10, 100000]",
                    ));
                }
            },
        };
        let control_hz = match table.get("control_hz") {
            None => 30.0,
            Some(v) => match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
                Some(hz) if (1.0..=120.0).contains(&hz) => hz,
                _ => {
                    return Err(err(
                        origin,
                        "`control_hz` must be a number of decisions per second in [1, 120]",
                    ));
                }
            },
        };
        let sparse_reward = match table.get("reward").map(|v| v.as_str()) {
            None | Some(Some("progress")) => false,
            Some(Some("sparse")) => true,
            Some(_) => return Err(err(origin, "`reward` must be \"progress\" or \"sparse\"")),
        };

        // Optional sampling block.
        let mut sampled: Option<Sampling> = None;
        if let Some(s) = table.get("sample") {
            let s = s
                .as_table()
                .ok_or_else(|| err(origin, "`sample` must be a table"))?;
            if let Some(k) = s
                .keys()
                .find(|k| !["seed", "train", "test", "base", "ranges"].contains(&k.as_str()))
            {
                return Err(err(
                    origin,
                    format!("unknown key `sample.{k}`; known: seed, train, test, base, ranges"),
                ));
            }
            let count = |k: &str| -> Result<usize, RlError> {
                match s.get(k).map(|v| v.as_integer()) {
                    None => Ok(0),
                    Some(Some(n)) if (0..=100_000).contains(&n) => Ok(n as usize),
                    _ => Err(err(
                        origin,
                        format!("`sample.{k}` must be a count in [0, 100000]"),
                    )),
                }
            };
            let seed = match s.get("seed").map(|v| v.as_integer()) {
                None => 0,
                Some(Some(n)) if n >= 0 => n as u64,
                _ => return Err(err(origin, "`sample.seed` must be a non-negative integer")),
            };
            let base = match s.get("base") {
                None => toml::Table::new(),
                Some(v) => v
                    .as_table()
                    .cloned()
                    .ok_or_else(|| err(origin, "`sample.base` must be a table"))?,
            };
            let ranges: BTreeMap<String, [f64; 2]> = match s.get("ranges") {
                None => BTreeMap::new(),
                Some(v) => v.clone().try_into().map_err(|e| {
                    err(
                        origin,
                        format!("`sample.ranges`: {e} (each must be [lo, hi])"),
                    )
                })?,
            };
            sampled = Some(Sampling {
                seed,
                train: count("train")?,
                test: count("test")?,
                base,
                ranges,
            });
        }

        let (train, test) = match task {
            TaskKind::CartPole => {
                let (tr, te) = sample_split::<CartPoleContext>(sampled.as_ref(), origin)?;
                let (tr, te) = complete(tr, te, &table, origin, CartPoleContext::validate, |c| {
                    &mut c.name
                })?;
                (Instances::CartPole(tr), Instances::CartPole(te))
            }
            TaskKind::Pendulum => {
                let (tr, te) = sample_split::<PendulumContext>(sampled.as_ref(), origin)?;
                let (tr, te) = complete(tr, te, &table, origin, PendulumContext::validate, |c| {
                    &mut c.name
                })?;
                (Instances::Pendulum(tr), Instances::Pendulum(te))
            }
            TaskKind::Twin => {
                let (mut tr, mut te) = (Vec::new(), Vec::new());
                if let Some(smp) = &sampled {
                    let base: Context = toml::Value::Table(smp.base.clone())
                        .try_into()
                        .map_err(|e| err(origin, format!("`sample.base`: {e}")))?;
                    let space = ContextSpace {
                        base,
                        ranges: smp.ranges.clone(),
                    };
                    let mut all = space
                        .sample(smp.train + smp.test, smp.seed)
                        .map_err(|e| err(origin, e))?
                        .instance;
                    te = all.split_off(smp.train);
                    tr = all;
                }
                let (tr, te) =
                    complete(tr, te, &table, origin, Context::validate, |c| &mut c.name)?;
                (Instances::Twin(tr), Instances::Twin(te))
            }
        };
        if train.is_empty() {
            return Err(err(
                origin,
                "no training instance (give [[train]] tables or `sample.train`)",
            ));
        }
        if test.is_empty() {
            return Err(err(
                origin,
                "no held-out test instance (give [[test]] tables or `sample.test`)",
            ));
        }
        let config = match table.get("config") {
            None => None,
            Some(v) => Some(std::path::PathBuf::from(v.as_str().ok_or_else(|| {
                err(origin, "`config` must be a file name (a string)")
            })?)),
        };
        Ok(Self {
            task,
            observe_context,
            continuous,
            max_steps,
            control_hz,
            sparse_reward,
            config,
            train,
            test,
        })
    }

    /// Read and check an instance file.
    pub fn load(path: &Path) -> Result<Self, RlError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RlError::Config(format!("cannot read instance file {}: {e}", path.display()))
        })?;
        let mut file = Self::parse(&text, &path.display().to_string())?;
        // A relative `config` is relative to the instance file's folder.
        if let (Some(c), Some(dir)) = (&file.config, path.parent())
            && c.is_relative()
        {
            file.config = Some(dir.join(c));
        }
        Ok(file)
    }

    /// An environment over one split.
    pub fn env(&self, split: &Instances) -> Result<Box<dyn Environment>, RlError> {
        Ok(match split {
            Instances::CartPole(v) => Box::new(CartPoleEnv::new(v.clone(), self.observe_context)?),
            Instances::Pendulum(v) => Box::new(PendulumEnv::new(v.clone(), self.observe_context)?),
            Instances::Twin(v) => Box::new(
                TwinAvoidEnv::new(
                    v.clone(),
                    self.observe_context,
                    self.continuous,
                    self.max_steps,
                    self.control_hz,
                )?
                .with_sparse_reward(self.sparse_reward),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_and_sampled_instances_parse_and_split() {
        let f = InstanceFile::parse(
            r#"
task = "cartpole"
[sample]
seed = 4
train = 5
test = 2
[sample.ranges]
length = [0.2, 1.5]
[[train]]
name = "long"
length = 2.0
[[test]]
gravity = 15.0
"#,
            "t.toml",
        )
        .unwrap();
        assert_eq!(f.train.len(), 6);
        assert_eq!(f.test.len(), 3);
        assert_eq!(f.train.names()[5], "long");
        assert_eq!(f.test.names()[0], "test000");
        let Instances::CartPole(tr) = &f.train else {
            panic!()
        };
        assert!(tr[..5].iter().all(|c| (0.2..=1.5).contains(&c.length)));
        let twin = InstanceFile::parse(
            "task = \"twin\"\n[sample]\ntrain = 3\ntest = 2\n[sample.ranges]\nobstacle_count = [0, 10]\n",
            "twin.toml",
        )
        .unwrap();
        assert_eq!((twin.train.len(), twin.test.len()), (3, 2));
        assert_ne!(twin.train, twin.test);
        assert!(twin.env(&twin.train).unwrap().instances() == 3);
    }

    #[test]
    fn a_relative_config_is_relative_to_the_instance_file() {
        let dir = std::env::temp_dir().join(format!("rl-inst-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("i.toml");
        std::fs::write(
            &path,
            "task = \"cartpole\"\nconfig = \"cfg/t.toml\"\n[[train]]\n[[test]]\n",
        )
        .unwrap();
        let f = InstanceFile::load(&path).unwrap();
        assert_eq!(f.config, Some(dir.join("cfg/t.toml")));
        // The shipped twin families name their tuned settings, and they parse.
        for family in ["twin_avoid", "twin_doorways", "twin_avoid_sensed"] {
            let twin =
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("instances/{family}.toml"));
            let f = InstanceFile::load(&twin).unwrap();
            assert_eq!((f.control_hz, f.max_steps), (10.0, 150), "{family}");
            assert_eq!(f.observe_context, family != "twin_avoid_sensed", "{family}");
            let cfg = crate::train::TrainConfig::load(f.config.as_ref().unwrap()).unwrap();
            assert_eq!(cfg.learner, crate::train::LearnerChoice::Ppo, "{family}");
            assert_eq!(cfg.space.rank, crate::curriculum::RankMode::Absolute);
        }
        // The sensed family is the same rooms without the context in the observation.
        let load = |name: &str| {
            InstanceFile::load(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("instances/{name}.toml")),
            )
            .unwrap()
        };
        let (avoid, sensed) = (load("twin_avoid"), load("twin_avoid_sensed"));
        assert_eq!(avoid.train, sensed.train);
        assert_eq!(avoid.test, sensed.test);
        let doors = InstanceFile::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("instances/twin_doorways.toml"),
        )
        .unwrap();
        let Instances::Twin(rooms) = &doors.train else {
            panic!("the doorway family is a twin family")
        };
        assert!(rooms.iter().all(|c| c.gate().is_some()));
        // The other shipped settings parse and ask for their learner.
        for (name, learner) in [
            ("cartpole_ppo", crate::train::LearnerChoice::Ppo),
            ("twin_dqn", crate::train::LearnerChoice::Dqn),
        ] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("config/{name}.toml"));
            let cfg = crate::train::TrainConfig::load(&p).unwrap();
            assert_eq!(cfg.learner, learner, "{name}");
        }
        let dqn = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/twin_dqn.toml");
        assert_eq!(crate::train::TrainConfig::load(&dqn).unwrap().dqn.n_step, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_files_name_the_problem() {
        let cases = [
            (
                "task = \"cartpole\"\ncolour = 1\n[[train]]\n[[test]]\n",
                "unknown key `colour`",
            ),
            ("task = \"boat\"\n", "`task`"),
            (
                "task = \"cartpole\"\n[[train]]\nlenght = 1.0\n[[test]]\n",
                "lenght",
            ),
            (
                "task = \"cartpole\"\n[[train]]\nlength = 9.0\n[[test]]\n",
                "`length` = 9",
            ),
            (
                "task = \"pendulum\"\n[[train]]\n",
                "no held-out test instance",
            ),
            (
                "task = \"twin\"\n[[train]]\nobstacle_count = 400\n[[test]]\n",
                "obstacle",
            ),
            (
                "task = \"cartpole\"\n[sample]\ntrain = 2\ntest = 1\n[sample.ranges]\nlength = [2.0, 1.0]\n",
                "length",
            ),
            (
                "task = \"cartpole\"\nactions = \"continuous\"\n[[train]]\n[[test]]\n",
                "twin task only",
            ),
            (
                "task = \"cartpole\"\n[[train]]\ngravity = nan\n[[test]]\n",
                "gravity",
            ),
            (
                "task = \"twin\"\ncontrol_hz = 0.2\n[[train]]\n[[test]]\n",
                "`control_hz`",
            ),
            (
                "task = \"twin\"\ncontrol_hz = \"fast\"\n[[train]]\n[[test]]\n",
                "`control_hz`",
            ),
            (
                "task = \"cartpole\"\ncontrol_hz = 10.0\n[[train]]\n[[test]]\n",
                "twin task only",
            ),
            (
                "task = \"twin\"\nreward = \"dense\"\n[[train]]\n[[test]]\n",
                "`reward`",
            ),
            (
                "task = \"pendulum\"\nreward = \"sparse\"\n[[train]]\n[[test]]\n",
                "twin task only",
            ),
            ("not toml [", "instance file"),
        ];
        for (text, want) in cases {
            let e = InstanceFile::parse(text, "bad.toml")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(want) && e.contains("bad.toml"),
                "{text:?} -> {e}"
            );
        }
        let e = InstanceFile::parse(
            "task = \"cartpole\"\nconfig = 3\n[[train]]\n[[test]]\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("`config`"), "{e}");
        let e = InstanceFile::load(Path::new("/nonexistent/i.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/i.toml"));
    }
}
