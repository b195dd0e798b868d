//! Slurm's syntax as `agent sweep slurm` writes and reads it: task lists
//! (`--array=3,5,7-9`), values of `#SBATCH` lines, words of the job script.

use anyhow::{Context as _, Result, bail};

/// Task indices from `3,5,7-9` (each below `n`).
pub(super) fn parse_tasks(spec: &str, n: usize) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let parse = |t: &str| -> Result<usize> {
            t.trim()
                .parse()
                .with_context(|| format!("--tasks: `{part}` is not a task number or range"))
        };
        let (a, b) = (parse(a)?, parse(b)?);
        if a > b || b >= n {
            bail!(
                "--tasks: `{part}` is outside the experiment's tasks 0..={}",
                n - 1
            );
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        bail!("--tasks names no task");
    }
    Ok(out)
}

/// `3,5,7-9` back from indices (Slurm's --array syntax).
pub(super) fn array_spec(tasks: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < tasks.len() {
        let mut j = i;
        while j + 1 < tasks.len() && tasks[j + 1] == tasks[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            tasks[i].to_string()
        } else {
            format!("{}-{}", tasks[i], tasks[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// A word for a POSIX shell, quoted when it needs to be.
pub(super) fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// `%K` for an array's limit of tasks at once, or nothing.
pub(super) fn throttle(k: Option<u32>) -> String {
    k.map_or(String::new(), |k| format!("%{k}"))
}

/// A value written into an `#SBATCH` line as it is: Slurm splits those at
/// whitespace and expands `%` patterns in file names, so neither may appear.
pub(super) fn directive_value(what: &str, v: &str) -> Result<()> {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c == '%' || c == '"' || c == '\'')
    {
        bail!(
            "{what} `{v}` cannot go into an #SBATCH line (no spaces, quotes or %); choose another"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_lists_parse_and_print_as_slurm_arrays() {
        assert_eq!(parse_tasks("3,5,7-9", 10).unwrap(), vec![3, 5, 7, 8, 9]);
        assert_eq!(array_spec(&[3, 5, 7, 8, 9]), "3,5,7-9");
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert!(parse_tasks("10", 10).is_err());
        assert!(parse_tasks("4-2", 10).is_err());
        assert!(parse_tasks("x", 10).is_err());
        assert!(parse_tasks(",", 10).is_err());
    }

    #[test]
    fn shell_words_survive_spaces_and_quotes() {
        assert_eq!(shell_word("out/train"), "out/train");
        assert_eq!(shell_word("my dir"), "'my dir'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
