//! The YAML subset OpenCV's `FileStorage` and ROS `camera_info` files use:
//! top-level `key: scalar` lines and matrix blocks
//! (`key: !!opencv-matrix` or `key:` followed by indented `rows`, `cols`,
//! optional `dt`, and a `data: [ ... ]` list that may span lines).

use std::collections::BTreeMap;
use thiserror::Error;

/// A parse failure, with the 1-based line.
#[derive(Debug, Error, PartialEq)]
#[error("line {line}: {msg}")]
pub struct YamlError {
    /// Line number (1-based).
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

/// A value: a scalar (as written) or a matrix.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar, quotes removed.
    Scalar(String),
    /// A row-major matrix.
    Matrix {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// rows x cols values.
        data: Vec<f64>,
    },
}

/// Parse a document into its top-level keys.
pub fn parse(text: &str) -> Result<BTreeMap<String, Value>, YamlError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = BTreeMap::new();
    let mut i = 0;
    let err = |line: usize, msg: String| YamlError {
        line: line + 1,
        msg,
    };
    while i < lines.len() {
        let raw = lines[i];
        let t = raw.trim();
        if t.is_empty() || t.starts_with('%') || t.starts_with("---") || t.starts_with('#') {
            i += 1;
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            return Err(err(i, format!("unexpected indented line `{t}`")));
        }
        let (key, rest) = t
            .split_once(':')
            .ok_or_else(|| err(i, format!("expected `key: value`, found `{t}`")))?;
        let key = key.trim().to_string();
        let rest = rest.trim().trim_start_matches("!!opencv-matrix").trim();
        if !rest.is_empty() {
            out.insert(
                key,
                Value::Scalar(rest.trim_matches(['"', '\'']).to_string()),
            );
            i += 1;
            continue;
        }
        // A block: indented fields of a matrix.
        let start = i;
        i += 1;
        let (mut rows, mut cols, mut data): (Option<usize>, Option<usize>, Option<Vec<f64>>) =
            (None, None, None);
        while i < lines.len() && (lines[i].starts_with([' ', '\t']) || lines[i].trim().is_empty()) {
            let t = lines[i].trim();
            i += 1;
            if t.is_empty() {
                continue;
            }
            let (k, v) = t
                .split_once(':')
                .ok_or_else(|| err(i - 1, format!("expected `field: value` in `{key}`")))?;
            match k.trim() {
                "rows" => {
                    rows =
                        Some(v.trim().parse().map_err(|_| {
                            err(i - 1, format!("`{key}.rows` is not a whole number"))
                        })?)
                }
                "cols" => {
                    cols =
                        Some(v.trim().parse().map_err(|_| {
                            err(i - 1, format!("`{key}.cols` is not a whole number"))
                        })?)
                }
                "dt" => {}
                "data" => {
                    let mut s = v.trim().to_string();
                    while !s.contains(']') && i < lines.len() {
                        s.push(' ');
                        s.push_str(lines[i].trim());
                        i += 1;
                    }
                    let inner = s
                        .trim()
                        .strip_prefix('[')
                        .and_then(|s| s.strip_suffix(']'))
                        .ok_or_else(|| {
                            err(i - 1, format!("`{key}.data` must be a [ ... ] list"))
                        })?;
                    let vals = inner
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| {
                            s.parse::<f64>().map_err(|_| {
                                err(i - 1, format!("`{key}.data` holds `{s}`, not a number"))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    data = Some(vals);
                }
                other => {
                    return Err(err(
                        i - 1,
                        format!("unknown field `{other}` in matrix `{key}`"),
                    ));
                }
            }
        }
        let (Some(rows), Some(cols), Some(data)) = (rows, cols, data) else {
            return Err(err(
                start,
                format!("matrix `{key}` needs rows, cols and data"),
            ));
        };
        if data.len() != rows * cols {
            return Err(err(
                start,
                format!(
                    "matrix `{key}` is {rows}x{cols} but holds {} values",
                    data.len()
                ),
            ));
        }
        out.insert(key, Value::Matrix { rows, cols, data });
    }
    Ok(out)
}

/// Format a number so that it reads back exactly and OpenCV and ROS parse it.
pub fn num(v: f64) -> String {
    let s = format!("{v:?}");
    if s.contains(['.', 'e', 'E', 'n', 'N', 'i']) {
        s
    } else {
        format!("{s}.")
    }
}

/// A matrix block. `opencv` adds the `!!opencv-matrix` tag and `dt: d`.
pub fn matrix(key: &str, rows: usize, cols: usize, data: &[f64], opencv: bool) -> String {
    let vals: Vec<String> = data.iter().map(|&v| num(v)).collect();
    if opencv {
        format!(
            "{key}: !!opencv-matrix\n   rows: {rows}\n   cols: {cols}\n   dt: d\n   data: [ {} ]\n",
            vals.join(", ")
        )
    } else {
        format!(
            "{key}:\n  rows: {rows}\n  cols: {cols}\n  data: [{}]\n",
            vals.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_opencv_multiline_matrices_and_scalars() {
        let text = "%YAML:1.0\n---\nimage_width: 640\nname: \"left\"\nM1: !!opencv-matrix\n   rows: 2\n   cols: 2\n   dt: d\n   data: [ 1., 2.5e+00,\n       -3., 4e-3 ]\n";
        let m = parse(text).unwrap();
        assert_eq!(m["image_width"], Value::Scalar("640".into()));
        assert_eq!(m["name"], Value::Scalar("left".into()));
        assert_eq!(
            m["M1"],
            Value::Matrix {
                rows: 2,
                cols: 2,
                data: vec![1.0, 2.5, -3.0, 0.004]
            }
        );
    }

    #[test]
    fn malformed_documents_name_the_line_and_key() {
        let e = parse("M: !!opencv-matrix\n   rows: 2\n   cols: 2\n   data: [ 1, 2, 3 ]\n")
            .unwrap_err();
        assert!(e.msg.contains("`M` is 2x2 but holds 3"), "{e}");
        let e = parse("K:\n  rows: 1\n  cols: 1\n  data: [ x ]\n").unwrap_err();
        assert!(e.msg.contains("`x`") && e.line == 4, "{e}");
        assert!(parse("just text\n").is_err());
        assert!(
            parse("K:\n  rows: 1\n")
                .unwrap_err()
                .msg
                .contains("needs rows, cols and data")
        );
    }

    #[test]
    fn numbers_round_trip() {
        for v in [0.0, 1.0, -2.5, 1e-12, 123456.789, f64::MIN_POSITIVE] {
            assert_eq!(num(v).trim_end_matches('.').parse::<f64>().unwrap(), v);
        }
    }
}
