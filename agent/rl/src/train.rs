//! One training run (a curriculum, a seed, a step budget) and the comparison of
//! runs: held-out evaluation on a fixed step grid shared by every curriculum,
//! metrics appended to CSV as they come, checkpoints that resume, and the
//! steps each curriculum needs to reach a target test return.

use crate::RlError;
use crate::curriculum::{Curriculum, CurriculumKind, CurriculumState, SpaceConfig};
use crate::dqn::{Dqn, DqnConfig};
use crate::env::{ActionSpace, Environment};
use crate::instances::InstanceFile;
use crate::learner::{Learner, read_state, write_state};
use crate::ppo::{Ppo, PpoConfig};
use crate::replay::Transition;
use crate::sac::{Sac, SacConfig};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Training settings (a TOML file; every table optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Which learner: `auto` (DQN for discrete actions, SAC for continuous),
    /// `dqn`, `sac` or `ppo` (discrete actions).
    pub learner: LearnerChoice,
    /// DQN settings (discrete tasks).
    pub dqn: DqnConfig,
    /// SAC settings (continuous tasks).
    pub sac: SacConfig,
    /// PPO settings (with `learner = "ppo"`).
    pub ppo: PpoConfig,
    /// SPaCE settings.
    pub space: SpaceConfig,
    /// Evaluate the held-out instances every this many environment steps.
    pub eval_every: u64,
    /// Greedy episodes per test instance at each evaluation.
    pub eval_episodes: usize,
    /// Also evaluate the training instances (slower; logged as `train_return`).
    pub eval_train: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            learner: LearnerChoice::Auto,
            dqn: DqnConfig::default(),
            sac: SacConfig::default(),
            ppo: PpoConfig::default(),
            space: SpaceConfig::default(),
            eval_every: 5000,
            eval_episodes: 1,
            eval_train: false,
        }
    }
}

impl TrainConfig {
    /// Read a training config; unknown keys and bad values are named.
    pub fn load(path: &Path) -> Result<Self, RlError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            RlError::Config(format!(
                "cannot read training config {}: {e}",
                path.display()
            ))
        })?;
        let c: TrainConfig = toml::from_str(&text)
            .map_err(|e| RlError::Config(format!("training config {}: {e}", path.display())))?;
        c.dqn.validate()?;
        c.sac.validate()?;
        c.ppo.validate()?;
        if c.eval_every == 0 || c.eval_episodes == 0 {
            return Err(RlError::Config(format!(
                "training config {}: `eval_every` and `eval_episodes` must be at least 1",
                path.display()
            )));
        }
        Ok(c)
    }
}

/// The learner a training config asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LearnerChoice {
    /// DQN for discrete actions, SAC for continuous ones.
    Auto,
    /// Double DQN.
    Dqn,
    /// Soft actor-critic.
    Sac,
    /// Proximal policy optimisation.
    Ppo,
}

/// One run to do.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The curriculum.
    pub curriculum: CurriculumKind,
    /// Seed of the networks, exploration, episodes and curriculum.
    pub seed: u64,
    /// Environment steps to train (evaluation steps not counted).
    pub steps: u64,
    /// Folder of this run's metrics and checkpoint.
    pub dir: PathBuf,
    /// Continue from the checkpoint in `dir` when there is one.
    pub resume: bool,
}

/// Figures of one held-out evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// Training environment steps so far.
    pub steps: u64,
    /// Training episodes so far.
    pub episodes: u64,
    /// Instances in the curriculum.
    pub curriculum_size: usize,
    /// Mean undiscounted return over the test instances (greedy policy).
    pub test_return: f64,
    /// The same with the reference code's reverse-discounted metric (R ← 0.95·R + r).
    pub test_return_revdisc: f64,
    /// Fraction of test episodes that succeeded (twin).
    pub test_success: f64,
    /// Fraction of test episodes that ended in a collision (twin).
    pub test_collision: f64,
    /// Mean return over the training instances (when `eval_train`), else NaN.
    pub train_return: f64,
    /// Mean undiscounted return of the last 20 training episodes.
    pub recent_episode_return: f64,
    /// Recent mean loss (critic loss for SAC), NaN before training starts.
    pub loss: f64,
    /// Spread of V(s0) over the training instances at the last SPaCE update.
    pub value_std: f64,
    /// SPaCE updates whose values tied.
    pub ties: u64,
    /// Wall-clock seconds of the run so far.
    pub wall_s: f64,
}

/// Columns of `test_instances.csv`: each held-out instance at each evaluation.
const ROOMS_HEADER: &str = "steps,instance,name,test_return,test_success,test_collision";

/// An instance name as one CSV field (names come from instance files).
fn csv_field(name: &str) -> String {
    name.replace([',', '\n', '\r'], " ")
}

const CSV_HEADER: &str = "steps,episodes,curriculum_size,test_return,test_return_revdisc,test_success,test_collision,train_return,recent_episode_return,loss,value_std,ties,wall_s";

impl EvalRow {
    fn csv(&self) -> String {
        format!(
            "{},{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.6},{:.6},{},{:.2}",
            self.steps,
            self.episodes,
            self.curriculum_size,
            self.test_return,
            self.test_return_revdisc,
            self.test_success,
            self.test_collision,
            self.train_return,
            self.recent_episode_return,
            self.loss,
            self.value_std,
            self.ties,
            self.wall_s
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 13 {
            return None;
        }
        let num = |i: usize| f[i].parse::<f64>().ok();
        Some(Self {
            steps: f[0].parse().ok()?,
            episodes: f[1].parse().ok()?,
            curriculum_size: f[2].parse().ok()?,
            test_return: num(3)?,
            test_return_revdisc: num(4)?,
            test_success: num(5)?,
            test_collision: num(6)?,
            train_return: num(7)?,
            recent_episode_return: num(8)?,
            loss: num(9)?,
            value_std: num(10)?,
            ties: f[11].parse().ok()?,
            wall_s: num(12)?,
        })
    }
}

/// Read a run's metrics file.
pub fn read_metrics(path: &Path) -> Result<Vec<EvalRow>, RlError> {
    let text = std::fs::read_to_string(path).map_err(|e| RlError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(text.lines().skip(1).filter_map(EvalRow::parse).collect())
}

/// Where a run is, for progress output.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// Steps done.
    pub steps: u64,
    /// Steps to do.
    pub total: u64,
    /// The latest evaluation, when this report is one.
    pub eval: Option<&'a EvalRow>,
}

/// What a finished (or stopped) run leaves.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Every evaluation, in order.
    pub evals: Vec<EvalRow>,
    /// The run was stopped (Ctrl-C) before its budget.
    pub interrupted: bool,
    /// The checkpoint folder.
    pub checkpoint: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct RunState {
    steps: u64,
    episodes: u64,
    task_obs_dim: usize,
    curriculum: CurriculumState,
}

/// A learner for an environment's action space.
pub fn make_learner(
    env: &dyn Environment,
    cfg: &TrainConfig,
    device: &Device,
    seed: u64,
) -> Result<Box<dyn Learner>, RlError> {
    let (d, space) = (env.obs_dim(), env.action_space());
    Ok(match (cfg.learner, space) {
        (LearnerChoice::Auto | LearnerChoice::Dqn, ActionSpace::Discrete(n)) => {
            Box::new(Dqn::new(cfg.dqn.clone(), d, n, device, seed)?)
        }
        (LearnerChoice::Auto | LearnerChoice::Sac, ActionSpace::Continuous(k)) => {
            Box::new(Sac::new(cfg.sac.clone(), d, k, device, seed)?)
        }
        (LearnerChoice::Ppo, ActionSpace::Discrete(n)) => {
            Box::new(Ppo::new(cfg.ppo.clone(), d, n, device, seed)?)
        }
        (choice, space) => {
            return Err(RlError::Config(format!(
                "learner `{}` cannot act in a {} action space; use `auto`",
                format!("{choice:?}").to_lowercase(),
                match space {
                    ActionSpace::Discrete(_) => "discrete",
                    ActionSpace::Continuous(_) => "continuous",
                }
            )));
        }
    })
}

/// Start a curriculum iteration at `steps`: tell the learner its length and
/// return the step at which it ends (none for curricula without iterations).
fn begin_iteration(curriculum: &Curriculum, learner: &mut dyn Learner, steps: u64) -> Option<u64> {
    let chunk = curriculum.chunk_steps()?;
    learner.begin_iteration(chunk);
    Some(steps + chunk)
}

/// Outcome of one greedy episode.
#[derive(Debug, Clone, Copy, Default)]
pub struct EpisodeStats {
    /// Undiscounted return.
    pub ret: f64,
    /// Reverse-discounted return (R ← 0.95·R + r).
    pub revdisc: f64,
    /// It succeeded.
    pub success: bool,
    /// It collided.
    pub collision: bool,
    /// Steps.
    pub steps: u64,
}

/// Run one greedy episode in instance `i`.
pub fn episode(
    env: &mut dyn Environment,
    learner: &mut dyn Learner,
    i: usize,
    seed: u64,
) -> Result<EpisodeStats, RlError> {
    let mut obs = env.reset(i, seed)?;
    let mut s = EpisodeStats::default();
    loop {
        let act = learner.act(&obs, false);
        let st = env.step(&act)?;
        s.ret += f64::from(st.reward);
        s.revdisc = 0.95 * s.revdisc + f64::from(st.reward);
        s.steps += 1;
        s.success |= st.success;
        s.collision |= st.collision;
        obs = st.obs;
        if st.terminated || st.truncated {
            return Ok(s);
        }
    }
}

/// Greedy figures of one instance, averaged over its evaluation episodes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct InstanceScore {
    /// Undiscounted return.
    pub ret: f64,
    /// The reference code's R <- 0.95 R + r (pitfall P6).
    pub revdisc: f64,
    /// Share of episodes that succeeded.
    pub success: f64,
    /// Share of episodes that ended in a collision.
    pub collision: f64,
}

/// Greedy episodes on every instance of `env`: one score per instance, so
/// that the rooms a policy fails can be told from the ones it flies.
pub fn evaluate_each(
    env: &mut dyn Environment,
    learner: &mut dyn Learner,
    episodes: usize,
    seed_base: u64,
) -> Result<Vec<InstanceScore>, RlError> {
    let per = episodes.max(1) as f64;
    (0..env.instances())
        .map(|i| {
            let mut sc = InstanceScore::default();
            for k in 0..episodes.max(1) {
                let s = episode(env, learner, i, seed_base + (i * 1000 + k) as u64)?;
                sc.ret += s.ret / per;
                sc.revdisc += s.revdisc / per;
                sc.success += f64::from(u8::from(s.success)) / per;
                sc.collision += f64::from(u8::from(s.collision)) / per;
            }
            Ok(sc)
        })
        .collect()
}

/// Mean of instance scores (every instance weighs the same).
pub fn mean_score(scores: &[InstanceScore]) -> InstanceScore {
    let n = scores.len().max(1) as f64;
    scores
        .iter()
        .fold(InstanceScore::default(), |m, s| InstanceScore {
            ret: m.ret + s.ret / n,
            revdisc: m.revdisc + s.revdisc / n,
            success: m.success + s.success / n,
            collision: m.collision + s.collision / n,
        })
}

/// V(s0) of every instance of `env`, each reset with a fixed seed so that
/// successive evaluations compare like with like.
pub fn start_values(
    env: &mut dyn Environment,
    learner: &mut dyn Learner,
) -> Result<Vec<f64>, RlError> {
    let obs = (0..env.instances())
        .map(|i| env.reset(i, 20_000 + i as u64))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(learner.values(&obs).into_iter().map(f64::from).collect())
}

/// Creates `path` anew with `header` and the rows kept from an earlier run.
fn rewrite_csv(
    path: &Path,
    header: &str,
    rows: impl IntoIterator<Item = String>,
) -> Result<std::fs::File, RlError> {
    let mut f = std::fs::File::create(path).map_err(|e| io(path, e))?;
    writeln!(f, "{header}").map_err(|e| io(path, e))?;
    for r in rows {
        writeln!(f, "{r}").map_err(|e| io(path, e))?;
    }
    Ok(f)
}

/// The rows of a resumed run's `test_instances.csv` that belong to the kept
/// evaluations. A missing file keeps none; an unreadable one is an error, so
/// that its history is not overwritten.
fn kept_instance_rows(path: &Path, evals: &[EvalRow]) -> Result<Vec<String>, RlError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path, e)),
    };
    let kept: std::collections::HashSet<u64> = evals.iter().map(|r| r.steps).collect();
    Ok(text
        .lines()
        .skip(1)
        .filter(|l| {
            l.split(',')
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .is_some_and(|s| kept.contains(&s))
        })
        .map(str::to_string)
        .collect())
}

fn io(path: &Path, e: std::io::Error) -> RlError {
    RlError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Save learner + run state into `dir/checkpoint` through a temporary folder,
/// so a crash mid-save leaves the previous checkpoint whole.
fn save_checkpoint(
    dir: &Path,
    learner: &dyn Learner,
    state: &RunState,
) -> Result<PathBuf, RlError> {
    let tmp = dir.join("checkpoint.tmp");
    let fin = dir.join("checkpoint");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    learner.save(&tmp)?;
    write_state(state, &tmp.join("run.toml"))?;
    let old = dir.join("checkpoint.old");
    if fin.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
        }
        std::fs::rename(&fin, &old).map_err(|e| io(&fin, e))?;
    }
    std::fs::rename(&tmp, &fin).map_err(|e| io(&tmp, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
    }
    Ok(fin)
}

/// The three folders a checkpoint lives in while it is saved: the current
/// one, the new copy being written, the previous one being replaced.
const CHECKPOINT_COPIES: [&str; 3] = ["checkpoint", "checkpoint.tmp", "checkpoint.old"];

/// Whether `dir` holds a run's checkpoint in any of its copies.
/// Whether `dir` holds a run's checkpoint (or a complete copy of one): a
/// run there refuses to start over without `resume`.
pub fn has_checkpoint(dir: &Path) -> bool {
    CHECKPOINT_COPIES
        .iter()
        .any(|c| dir.join(c).join("run.toml").is_file())
}

/// The newest intact checkpoint of the run in `dir`, in place as
/// `dir/checkpoint`. A save cut between its two renames leaves no
/// `checkpoint`, but a complete new copy (`checkpoint.tmp`: its run state is
/// written last, so a readable one means the copy is whole) or the previous
/// one (`checkpoint.old`); the newer readable one is moved into place.
/// `None`: no copy at all.
fn recover_checkpoint(dir: &Path) -> Result<Option<PathBuf>, RlError> {
    let fin = dir.join("checkpoint");
    if fin.join("run.toml").is_file() {
        return Ok(Some(fin));
    }
    for name in &CHECKPOINT_COPIES[1..] {
        let copy = dir.join(name);
        if read_state::<RunState>(&copy.join("run.toml")).is_err() {
            continue;
        }
        if fin.exists() {
            return Err(RlError::Checkpoint {
                path: fin.display().to_string(),
                reason: format!(
                    "it has no run state, and {name} has one: move one of them away by hand (nothing was changed)"
                ),
            });
        }
        std::fs::rename(&copy, &fin).map_err(|e| io(&copy, e))?;
        tracing::warn!(
            "{}: the last checkpoint save was interrupted; resuming from its {name} copy",
            dir.display()
        );
        return Ok(Some(fin));
    }
    Ok(None)
}

/// Where a run stands, for one evaluation row.
struct Live<'a> {
    steps: u64,
    episodes: u64,
    value_std: f64,
    recent: &'a std::collections::VecDeque<f64>,
}

/// Evaluations, the metrics file and checkpoints of one run.
struct Recorder<'a> {
    evals: Vec<EvalRow>,
    csv: std::fs::File,
    metrics_path: PathBuf,
    /// `test_instances.csv`: one row per held-out instance and evaluation.
    rooms: std::fs::File,
    rooms_path: PathBuf,
    dir: PathBuf,
    test_env: Box<dyn Environment>,
    cfg: &'a TrainConfig,
    start: Instant,
}

impl Recorder<'_> {
    /// Evaluate the held-out set (when `with_eval`), append and flush the row,
    /// then checkpoint; returns the checkpoint folder. `train_set` holds the
    /// training instances but is not the environment of the running training
    /// episode (evaluation resets it), so an evaluation can fall mid-episode.
    fn record(
        &mut self,
        with_eval: bool,
        live: &Live<'_>,
        learner: &mut dyn Learner,
        curriculum: &Curriculum,
        train_set: &mut dyn Environment,
    ) -> Result<PathBuf, RlError> {
        let state = RunState {
            steps: live.steps,
            episodes: live.episodes,
            task_obs_dim: train_set.obs_dim(),
            curriculum: curriculum.state().clone(),
        };
        if !with_eval {
            return save_checkpoint(&self.dir, learner, &state);
        }
        let cfg = self.cfg;
        let scores = evaluate_each(self.test_env.as_mut(), learner, cfg.eval_episodes, 10_000)?;
        let rooms_path = &self.rooms_path;
        for (i, sc) in scores.iter().enumerate() {
            writeln!(
                self.rooms,
                "{},{i},{},{:.4},{:.4},{:.4}",
                live.steps,
                csv_field(&self.test_env.instance_name(i)),
                sc.ret,
                sc.success,
                sc.collision
            )
            .map_err(|e| io(rooms_path, e))?;
        }
        self.rooms.flush().map_err(|e| io(rooms_path, e))?;
        let InstanceScore {
            ret: test_return,
            revdisc: test_return_revdisc,
            success: test_success,
            collision: test_collision,
        } = mean_score(&scores);
        let train_return = if cfg.eval_train {
            mean_score(&evaluate_each(
                train_set,
                learner,
                cfg.eval_episodes,
                30_000,
            )?)
            .ret
        } else {
            f64::NAN
        };
        let recent = live.recent;
        let row = EvalRow {
            steps: live.steps,
            episodes: live.episodes,
            curriculum_size: curriculum.active().len(),
            test_return,
            test_return_revdisc,
            test_success,
            test_collision,
            train_return,
            recent_episode_return: if recent.is_empty() {
                f64::NAN
            } else {
                recent.iter().sum::<f64>() / recent.len() as f64
            },
            loss: learner.recent_loss().map_or(f64::NAN, f64::from),
            value_std: live.value_std,
            ties: curriculum.state().ties,
            wall_s: self.start.elapsed().as_secs_f64(),
        };
        let path = &self.metrics_path;
        writeln!(self.csv, "{}", row.csv()).map_err(|e| io(path, e))?;
        self.csv.flush().map_err(|e| io(path, e))?;
        self.evals.push(row);
        save_checkpoint(&self.dir, learner, &state)
    }
}

/// Train one run: episodes drawn by the curriculum from the training instances,
/// SPaCE updates every 100·N steps, held-out evaluation and a checkpoint every
/// `eval_every` steps (and at the end). `stop` ends the run early, keeping what it wrote.
pub fn run(
    file: &InstanceFile,
    cfg: &TrainConfig,
    spec: &RunSpec,
    device: &Device,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<RunResult, RlError> {
    let envs = Envs {
        train: file.env(&file.train)?,
        values: file.env(&file.train)?,
        test: file.env(&file.test)?,
    };
    run_envs(envs, cfg, spec, device, stop, progress)
}

/// The environments of one run: training episodes, V(s0) resets (same
/// instances as `train`), and the held-out set.
pub struct Envs {
    /// Training instances, for episodes.
    pub train: Box<dyn Environment>,
    /// The same training instances, reset for V(s0) only.
    pub values: Box<dyn Environment>,
    /// Held-out instances, evaluated only.
    pub test: Box<dyn Environment>,
}

/// [`run`] over given environments.
pub fn run_envs(
    envs: Envs,
    cfg: &TrainConfig,
    spec: &RunSpec,
    device: &Device,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<RunResult, RlError> {
    let start = Instant::now();
    std::fs::create_dir_all(&spec.dir).map_err(|e| io(&spec.dir, e))?;
    let Envs {
        train: mut train_env,
        values: mut value_env,
        test: test_env,
    } = envs;
    if value_env.instances() != train_env.instances() || test_env.obs_dim() != train_env.obs_dim() {
        return Err(RlError::Config(
            "the value environment must hold the training instances and the test set the same observations".into(),
        ));
    }
    let n_train = train_env.instances();
    let mut learner = make_learner(train_env.as_ref(), cfg, device, spec.seed)?;
    learner.set_budget(spec.steps);
    let mut curriculum = Curriculum::new(spec.curriculum, n_train, cfg.space.clone(), spec.seed);
    let (mut steps, mut episodes) = (0u64, 0u64);
    let metrics_path = spec.dir.join("metrics.csv");
    let ckpt = spec.dir.join("checkpoint");
    let mut evals = Vec::new();

    // Never overwrite a finished or interrupted run by accident.
    if !spec.resume && has_checkpoint(&spec.dir) {
        return Err(RlError::Config(format!(
            "{} holds a previous run; pass --resume to continue it, or choose another output folder (nothing was changed)",
            spec.dir.display()
        )));
    }
    let recovered = if spec.resume {
        recover_checkpoint(&spec.dir)?
    } else {
        None
    };
    // A run whose history exists without any checkpoint cannot resume: starting
    // over would rewrite its metrics.
    if spec.resume
        && recovered.is_none()
        && metrics_path.is_file()
        && !read_metrics(&metrics_path)?.is_empty()
    {
        return Err(RlError::Checkpoint {
            path: ckpt.display().to_string(),
            reason: format!(
                "no intact checkpoint to resume from, but {} holds the run's evaluations; nothing was changed (start a new run in another folder)",
                metrics_path.display()
            ),
        });
    }
    if recovered.is_some() {
        let state: RunState = read_state(&ckpt.join("run.toml"))?;
        if state.task_obs_dim != train_env.obs_dim() {
            return Err(RlError::Checkpoint {
                path: ckpt.display().to_string(),
                reason: format!(
                    "saved for observations of {} values, this instance file gives {}",
                    state.task_obs_dim,
                    train_env.obs_dim()
                ),
            });
        }
        learner.load(&ckpt)?;
        curriculum = Curriculum::from_state(state.curriculum, n_train, cfg.space.clone())
            .ok_or_else(|| RlError::Checkpoint {
                path: ckpt.display().to_string(),
                reason: format!("curriculum state does not fit {n_train} training instances"),
            })?;
        steps = state.steps;
        episodes = state.episodes;
        if metrics_path.is_file() {
            evals = read_metrics(&metrics_path)?
                .into_iter()
                .filter(|r| r.steps <= steps)
                .collect();
        }
        tracing::info!("resumed {} at step {steps}", spec.dir.display());
    }
    // Rewrite both history files with what is kept, then append as we go:
    // a held-out instance's rows stay exactly when their evaluation does.
    let csv = rewrite_csv(&metrics_path, CSV_HEADER, evals.iter().map(EvalRow::csv))?;
    let rooms_path = spec.dir.join("test_instances.csv");
    let kept_rooms = if evals.is_empty() {
        Vec::new()
    } else {
        kept_instance_rows(&rooms_path, &evals)?
    };
    let rooms = rewrite_csv(&rooms_path, ROOMS_HEADER, kept_rooms)?;

    let mut value_std = f64::NAN;
    let mut recent: std::collections::VecDeque<f64> = std::collections::VecDeque::new();
    let mut next_update = begin_iteration(&curriculum, learner.as_mut(), steps);
    // On the grid of `eval_every` after a resume too: a run stopped between
    // two evaluations (Ctrl-C, a scheduler's time limit) that went on from
    // its stop would evaluate off the grid the other runs share, and the mean
    // curve keeps only the steps every run has.
    let mut next_eval = if evals.is_empty() {
        steps
    } else {
        (steps / cfg.eval_every.max(1) + 1) * cfg.eval_every.max(1)
    };
    let report_every = (spec.steps / 100).max(1);
    let mut interrupted = false;

    let mut rec = Recorder {
        evals,
        csv,
        metrics_path,
        rooms,
        rooms_path,
        dir: spec.dir.clone(),
        test_env,
        cfg,
        start,
    };

    let mut last_good: Option<PathBuf> = ckpt.join("run.toml").is_file().then(|| ckpt.clone());
    'episodes: while steps < spec.steps {
        let instance = curriculum.next_instance();
        let mut obs = train_env.reset(
            instance,
            spec.seed.wrapping_mul(1_000_003).wrapping_add(episodes),
        )?;
        let mut ret = 0.0;
        loop {
            if steps >= next_eval {
                // The evaluation resets the environments it uses; the training
                // episode goes on from its own environment, untouched.
                let live = Live {
                    steps,
                    episodes,
                    value_std,
                    recent: &recent,
                };
                let ckpt = rec.record(
                    true,
                    &live,
                    learner.as_mut(),
                    &curriculum,
                    value_env.as_mut(),
                )?;
                last_good = Some(ckpt);
                progress(Progress {
                    steps,
                    total: spec.steps,
                    eval: rec.evals.last(),
                });
                next_eval = steps + cfg.eval_every;
            }
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                break 'episodes;
            }
            let act = learner.act(&obs, true);
            let st = train_env.step(&act)?;
            ret += f64::from(st.reward);
            let done = st.terminated || st.truncated;
            let t = Transition::from_step(std::mem::take(&mut obs), &act, &st);
            let stopped = |e: RlError, last_good: &Option<PathBuf>| match e {
                RlError::Diverged { step, what, value } => RlError::Config(format!(
                    "training stopped at step {step}: {what} = {value}; no weights were written after it; last good checkpoint: {}",
                    last_good
                        .as_ref()
                        .map_or("none yet".to_string(), |p| p.display().to_string())
                )),
                other => other,
            };
            learner.observe(t).map_err(|e| stopped(e, &last_good))?;
            obs = st.obs;
            steps += 1;
            if steps.is_multiple_of(report_every) {
                progress(Progress {
                    steps,
                    total: spec.steps,
                    eval: None,
                });
            }
            // An iteration ends: an on-policy learner learns on what it gathered.
            if next_update.is_some_and(|u| steps >= u) {
                learner
                    .end_iteration()
                    .map_err(|e| stopped(e, &last_good))?;
            }
            // No curriculum update before the learner has taken a gradient step:
            // untouched values would read as "settled" and grow the set for nothing.
            if next_update.is_some_and(|u| steps >= u) && learner.updates() == 0 {
                next_update = begin_iteration(&curriculum, learner.as_mut(), steps);
            } else if next_update.is_some_and(|u| steps >= u) {
                let values = start_values(value_env.as_mut(), learner.as_mut())?;
                let r = curriculum.update(&values);
                value_std = r.value_std;
                next_update = begin_iteration(&curriculum, learner.as_mut(), steps);
            }
            if done || steps >= spec.steps {
                episodes += 1;
                recent.push_back(ret);
                if recent.len() > 20 {
                    recent.pop_front();
                }
                break;
            }
        }
    }
    // One evaluation per step count: a run resumed where it had finished
    // (to read its history again) adds no second row at its last step.
    let with_eval = rec.evals.last().is_none_or(|r| r.steps < steps);
    let live = Live {
        steps,
        episodes,
        value_std,
        recent: &recent,
    };
    let checkpoint = rec.record(
        with_eval,
        &live,
        learner.as_mut(),
        &curriculum,
        value_env.as_mut(),
    )?;
    let policy = spec.dir.join("policy.bpk");
    learner.export_policy(&policy)?;
    if let Some(facts) = train_env.twin_card_facts() {
        let card = crate::policy::twin_card(
            learner.kind(),
            learner.policy_sizes(),
            facts.observe_context,
            facts.control_hz,
        );
        crate::policy::write_card(&card, &policy)?;
    }
    progress(Progress {
        steps,
        total: spec.steps,
        eval: rec.evals.last(),
    });
    Ok(RunResult {
        evals: rec.evals,
        interrupted,
        checkpoint,
    })
}

/// The mean over runs of test return on their common evaluation grid
/// (steps present in every run).
pub fn mean_curve<R: AsRef<[EvalRow]>>(runs: &[R]) -> Vec<(u64, f64)> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .as_ref()
        .iter()
        .filter_map(|r| {
            let vals: Option<Vec<f64>> = runs
                .iter()
                .map(|run| {
                    run.as_ref()
                        .iter()
                        .find(|x| x.steps == r.steps)
                        .map(|x| x.test_return)
                })
                .collect();
            vals.map(|v| (r.steps, v.iter().sum::<f64>() / v.len() as f64))
        })
        .collect()
}

/// First step at which a curve reaches `target`.
pub fn steps_to_reach(curve: &[(u64, f64)], target: f64) -> Option<u64> {
    curve.iter().find(|(_, v)| *v >= target).map(|(s, _)| *s)
}

/// Mean of the last `k` points of a curve (a steadier "final" figure than one point).
pub fn final_value(curve: &[(u64, f64)], k: usize) -> Option<f64> {
    let tail = &curve[curve.len().saturating_sub(k.max(1))..];
    (!tail.is_empty()).then(|| tail.iter().map(|(_, v)| v).sum::<f64>() / tail.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{Act, Step};

    /// A one-state task whose reward turns NaN after `good` steps.
    struct NanAfter {
        good: u64,
        n: u64,
    }

    impl Environment for NanAfter {
        fn obs_dim(&self) -> usize {
            2
        }
        fn action_space(&self) -> ActionSpace {
            ActionSpace::Discrete(2)
        }
        fn instances(&self) -> usize {
            2
        }
        fn instance_name(&self, i: usize) -> String {
            format!("i{i}")
        }
        fn reset(&mut self, i: usize, _seed: u64) -> Result<Vec<f32>, RlError> {
            Ok(vec![i as f32, 1.0])
        }
        fn step(&mut self, _a: &Act) -> Result<Step, RlError> {
            self.n += 1;
            Ok(Step {
                obs: vec![0.0, 1.0],
                reward: if self.n > self.good { f32::NAN } else { 1.0 },
                terminated: false,
                truncated: self.n.is_multiple_of(10),
                collision: false,
                success: false,
            })
        }
    }

    /// Training episodes whose reward turns NaN after `good` steps; value and
    /// test environments that stay finite.
    fn nan_envs(good: u64) -> Envs {
        let finite = || {
            Box::new(NanAfter {
                good: u64::MAX,
                n: 0,
            })
        };
        Envs {
            train: Box::new(NanAfter { good, n: 0 }),
            values: finite(),
            test: finite(),
        }
    }

    /// CPU device, an empty run folder, and a small DQN evaluated every 100 steps.
    fn small_run(name: &str) -> (Device, PathBuf, TrainConfig) {
        #[allow(deprecated)]
        let device = Device::ndarray();
        let dir = std::env::temp_dir().join(format!("rl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cfg = TrainConfig::default();
        cfg.dqn.hidden = vec![16];
        cfg.dqn.learning_starts = 50;
        cfg.eval_every = 100;
        (device, dir, cfg)
    }

    #[test]
    fn a_nan_loss_stops_training_and_names_the_last_good_checkpoint() {
        let (device, dir, mut cfg) = small_run("nan");
        cfg.dqn.train_freq = 1;
        cfg.dqn.gradient_steps = 1;
        let envs = nan_envs(300);
        let spec = RunSpec {
            curriculum: CurriculumKind::Space,
            seed: 1,
            steps: 2000,
            dir: dir.clone(),
            resume: false,
        };
        let e = run_envs(
            envs,
            &cfg,
            &spec,
            &device,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("training stopped at step"), "{e}");
        assert!(e.contains("NaN"), "{e}");
        assert!(
            e.contains(&dir.join("checkpoint").display().to_string()),
            "{e}"
        );
        // The checkpoint on disk holds finite weights: load it and ask for values.
        let env = NanAfter { good: 0, n: 0 };
        let mut learner = make_learner(&env, &cfg, &device, 1).unwrap();
        learner.load(&dir.join("checkpoint")).unwrap();
        assert!(
            learner
                .values(&[vec![0.0, 1.0]])
                .iter()
                .all(|v| v.is_finite())
        );
        let rows = read_metrics(&dir.join("metrics.csv")).unwrap();
        assert!(rows.len() >= 3, "metrics kept: {}", rows.len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ppo_learns_at_space_iterations_and_stops_on_nan() {
        let (device, dir, mut cfg) = small_run("ppo");
        cfg.learner = LearnerChoice::Ppo;
        cfg.ppo.hidden = vec![16];
        // Rollouts far longer than the run: every update comes from an iteration's end.
        cfg.ppo.rollout = 100_000;
        let spec = |curriculum, dir: &Path| RunSpec {
            curriculum,
            seed: 3,
            steps: 1000,
            dir: dir.to_path_buf(),
            resume: false,
        };
        let stop = AtomicBool::new(false);
        let space = run_envs(
            nan_envs(u64::MAX),
            &cfg,
            &spec(CurriculumKind::Space, &dir.join("space")),
            &device,
            &stop,
            &mut |_| {},
        )
        .unwrap();
        assert!(space.evals.last().unwrap().loss.is_finite(), "PPO updated");
        let card = std::fs::read_to_string(dir.join("space/checkpoint/ppo.toml")).unwrap();
        assert!(card.contains("steps = 1000"), "{card}");
        // Round robin has no iterations: nothing learnt before a rollout fills.
        let rr = run_envs(
            nan_envs(u64::MAX),
            &cfg,
            &spec(CurriculumKind::RoundRobin, &dir.join("rr")),
            &device,
            &stop,
            &mut |_| {},
        )
        .unwrap();
        assert!(rr.evals.last().unwrap().loss.is_nan());
        // A NaN reward stops PPO's update with the step named, as for DQN.
        let e = run_envs(
            nan_envs(300),
            &cfg,
            &spec(CurriculumKind::Space, &dir.join("nan")),
            &device,
            &stop,
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("training stopped at step") && e.contains("PPO loss"),
            "{e}"
        );
        // PPO here acts in discrete spaces only, and says so.
        struct Continuous;
        impl Environment for Continuous {
            fn obs_dim(&self) -> usize {
                1
            }
            fn action_space(&self) -> ActionSpace {
                ActionSpace::Continuous(1)
            }
            fn instances(&self) -> usize {
                1
            }
            fn instance_name(&self, _: usize) -> String {
                "c".into()
            }
            fn reset(&mut self, _: usize, _: u64) -> Result<Vec<f32>, RlError> {
                Ok(vec![0.0])
            }
            fn step(&mut self, _: &Act) -> Result<Step, RlError> {
                Err(RlError::Action("unused".into()))
            }
        }
        let e = make_learner(&Continuous, &cfg, &device, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`ppo`") && e.contains("continuous"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh SPaCE run of 300 steps into `dir`.
    fn space_run(dir: &Path) -> RunSpec {
        RunSpec {
            curriculum: CurriculumKind::Space,
            seed: 2,
            steps: 300,
            dir: dir.to_path_buf(),
            resume: false,
        }
    }

    #[test]
    fn a_checkpoint_resumes_and_another_shape_is_refused() {
        let (device, dir, mut cfg) = small_run("resume");
        let envs = || nan_envs(u64::MAX);
        let mut spec = space_run(&dir);
        let stop = AtomicBool::new(false);
        let first = run_envs(envs(), &cfg, &spec, &device, &stop, &mut |_| {}).unwrap();
        assert_eq!(first.evals.last().unwrap().steps, 300);
        spec.steps = 500;
        spec.resume = true;
        let second = run_envs(envs(), &cfg, &spec, &device, &stop, &mut |_| {}).unwrap();
        let steps: Vec<u64> = second.evals.iter().map(|r| r.steps).collect();
        assert_eq!(
            steps,
            vec![0, 100, 200, 300, 400, 500],
            "history kept, training went on"
        );
        // Resuming a finished run gives its history back and adds nothing.
        let again = run_envs(envs(), &cfg, &spec, &device, &stop, &mut |_| {}).unwrap();
        let figures = |r: &RunResult| -> Vec<(u64, f64)> {
            r.evals.iter().map(|e| (e.steps, e.test_return)).collect()
        };
        assert_eq!(figures(&again), figures(&second));
        let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + steps.len(), "{csv}");
        // Each held-out instance once per evaluation, the resumed rows kept once.
        let rooms = std::fs::read_to_string(dir.join("test_instances.csv")).unwrap();
        let rows: Vec<(u64, String)> = rooms
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                assert_eq!(f.len(), 6, "{l}");
                (f[0].parse().unwrap(), f[2].to_string())
            })
            .collect();
        let want: Vec<(u64, String)> = steps
            .iter()
            .flat_map(|&s| [(s, "i0".to_string()), (s, "i1".to_string())])
            .collect();
        assert_eq!(rows, want, "{rooms}");
        // A learner of another shape refuses the checkpoint, naming it.
        cfg.dqn.hidden = vec![32];
        let env = NanAfter { good: 0, n: 0 };
        let mut other = make_learner(&env, &cfg, &device, 1).unwrap();
        let e = other.load(&dir.join("checkpoint")).unwrap_err().to_string();
        assert!(e.contains("dqn.toml") && e.contains("[2, 16, 2]"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A save cut between its two renames (the previous checkpoint moved to
    /// `checkpoint.old`, the new one complete in `checkpoint.tmp`, no
    /// `checkpoint`): resuming takes the newest intact copy and keeps the
    /// history; with no copy at all it refuses and leaves the history alone.
    #[test]
    fn resume_after_interrupted_save_keeps_progress() {
        let (device, dir, cfg) = small_run("cut-save");
        let envs = || nan_envs(u64::MAX);
        let mut spec = space_run(&dir);
        let stop = AtomicBool::new(false);
        run_envs(envs(), &cfg, &spec, &device, &stop, &mut |_| {}).unwrap();
        let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        let steps_of = |copy: &str| {
            read_state::<RunState>(&dir.join(copy).join("run.toml"))
                .unwrap()
                .steps
        };
        // Cut after the first rename: only the new copy and the old one exist.
        std::fs::rename(dir.join("checkpoint"), dir.join("checkpoint.tmp")).unwrap();
        assert_eq!(steps_of("checkpoint.tmp"), 300);
        // A fresh run in this folder is refused: it holds a run.
        let e = run_envs(envs(), &cfg, &spec, &device, &stop, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("--resume"), "{e}");
        spec.resume = true;
        spec.steps = 400;
        let resumed = run_envs(envs(), &cfg, &spec, &device, &stop, &mut |_| {}).unwrap();
        let steps: Vec<u64> = resumed.evals.iter().map(|r| r.steps).collect();
        assert_eq!(steps, vec![0, 100, 200, 300, 400], "resumed at 300, not 0");
        assert!(
            std::fs::read_to_string(dir.join("metrics.csv"))
                .unwrap()
                .starts_with(&metrics),
            "the history before the cut was rewritten"
        );
        // Only the previous copy survived (the new one was lost mid-write).
        std::fs::rename(dir.join("checkpoint"), dir.join("checkpoint.old")).unwrap();
        std::fs::create_dir_all(dir.join("checkpoint.tmp")).unwrap();
        std::fs::write(dir.join("checkpoint.tmp").join("run.toml"), "steps = ").unwrap();
        spec.steps = 500;
        let resumed = run_envs(envs(), &cfg, &spec, &device, &stop, &mut |_| {}).unwrap();
        assert_eq!(resumed.evals.last().map(|r| r.steps), Some(500));
        assert_eq!(resumed.evals.first().map(|r| r.steps), Some(0));
        // No copy at all: refused, loudly, and the history stays as it was.
        for c in CHECKPOINT_COPIES {
            let _ = std::fs::remove_dir_all(dir.join(c));
        }
        let before = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        spec.steps = 600;
        let e = run_envs(envs(), &cfg, &spec, &device, &stop, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("no intact checkpoint"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.join("metrics.csv")).unwrap(),
            before
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn curves_average_over_runs_and_find_the_first_crossing() {
        let row = |steps, test_return| EvalRow {
            steps,
            episodes: 0,
            curriculum_size: 1,
            test_return,
            test_return_revdisc: 0.0,
            test_success: 0.0,
            test_collision: 0.0,
            train_return: f64::NAN,
            recent_episode_return: 0.0,
            loss: f64::NAN,
            value_std: 0.0,
            ties: 0,
            wall_s: 0.0,
        };
        let a = vec![row(0, 0.0), row(10, 2.0), row(20, 4.0)];
        let b = vec![row(0, 0.0), row(10, 4.0)];
        let c = mean_curve(&[a.clone(), b]);
        assert_eq!(c, vec![(0, 0.0), (10, 3.0)]);
        assert_eq!(steps_to_reach(&c, 2.5), Some(10));
        assert_eq!(steps_to_reach(&c, 5.0), None);
        assert_eq!(final_value(&c, 2), Some(1.5));
        // CSV round trip, NaN included.
        let back = EvalRow::parse(&a[2].csv()).unwrap();
        assert_eq!(back.steps, 20);
        assert!(back.train_return.is_nan());
    }
}
