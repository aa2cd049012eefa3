//! The values of a pipeline file's keys: TOML values turned into command-line strings
//! (`${NAME}` expanded, path patterns globbed, an encoder chosen from a list), and parsed
//! settings turned back into typed TOML for `config.toml`.

use std::path::{Path, PathBuf};

use clap::ArgAction;

use super::{is_path, path_part, pipeline_error};
use crate::error::Result;

/// A resolved value as TOML: integers and decimals as numbers, the rest as strings.
pub(super) fn typed(raw: &str) -> toml::Value {
    if let Ok(integer) = raw.parse::<i64>() {
        return toml::Value::Integer(integer);
    }
    if raw.bytes().any(|b| b.is_ascii_digit())
        && let Ok(float) = raw.parse::<f64>()
    {
        return toml::Value::Float(float);
    }
    toml::Value::String(raw.to_owned())
}

/// The strings one key stands for: a scalar is one value, an array one value per element, an
/// inline table `{ a = "x", b = ["y", "z"] }` the values `a=x` and `b=y,z` (for `NAME=...` flags).
pub(super) fn argument_values(
    file: &Path,
    section: &str,
    key: &str,
    arg: &clap::Arg,
    value: toml::Value,
) -> Result<Vec<String>> {
    let scalar = |value: &toml::Value| -> Result<String> {
        match value {
            toml::Value::String(text) => expand(file, section, key, text),
            toml::Value::Integer(number) => Ok(number.to_string()),
            toml::Value::Float(number) => Ok(number.to_string()),
            toml::Value::Boolean(flag) => Ok(flag.to_string()),
            _ => Err(pipeline_error(
                file,
                format!("`{key}` in {section}: a {} is not a value", value.type_str()),
                "values are strings, numbers or booleans; repeatable flags take an array",
            )),
        }
    };
    let mut values = match &value {
        toml::Value::Array(items) => items.iter().map(scalar).collect::<Result<Vec<_>>>()?,
        toml::Value::Table(entries) => entries
            .iter()
            .map(|(name, value)| {
                let joined = match value {
                    toml::Value::Array(items) => items.iter().map(scalar).collect::<Result<Vec<_>>>()?.join(","),
                    other => scalar(other)?,
                };
                Ok(format!("{name}={joined}"))
            })
            .collect::<Result<Vec<_>>>()?,
        other => vec![scalar(other)?],
    };
    let repeatable = arg.is_positional() || matches!(arg.get_action(), ArgAction::Append);
    if values.len() != 1 && !repeatable {
        return Err(pipeline_error(
            file,
            format!("`{key}` in {section} takes one value, not {}", values.len()),
            "only repeatable flags (and the input list) take an array",
        ));
    }
    if is_path(arg) && (arg.is_positional() || matches!(arg.get_action(), ArgAction::Append)) {
        values = expand_globs(file, section, key, values)?;
    }
    Ok(values)
}

/// `${NAME}` replaced by the environment variable NAME; an unset one is an error.
fn expand(file: &Path, section: &str, key: &str, text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            pipeline_error(file, format!("`{key}` in {section}: `${{` without a closing `}}`"), "write `${NAME}`")
        })?;
        let name = &after[..end];
        let value = std::env::var(name).ok().filter(|value| !value.is_empty()).ok_or_else(|| {
            pipeline_error(
                file,
                format!("`{key}` in {section} uses ${{{name}}}, which is not set"),
                format!(
                    "set it, e.g. `export {name}=...`{}",
                    if name == "ROUTERDC_DATA" {
                        " (the RouterDC datasets: `routerdc data fetch` downloads them)"
                    } else {
                        ""
                    }
                ),
            )
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Path patterns with `*`, `?` or `[` expanded as a shell would (sorted); one that matches
/// nothing is an error.
fn expand_globs(file: &Path, section: &str, key: &str, values: Vec<String>) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let pattern = path_part(&value).to_owned();
        let prefix = value[..value.len() - pattern.len()].to_owned();
        if !pattern.contains(['*', '?', '[']) {
            out.push(value);
            continue;
        }
        let bad = |message: String| pipeline_error(file, format!("`{key}` in {section}: {message}"), "");
        let mut matched: Vec<PathBuf> = glob::glob(&pattern)
            .map_err(|error| bad(format!("`{pattern}` is not a pattern: {error}")))?
            .filter_map(std::result::Result::ok)
            .collect();
        if matched.is_empty() {
            return Err(bad(format!("`{pattern}` matches no file")));
        }
        matched.sort();
        out.extend(matched.into_iter().map(|path| format!("{prefix}{}", path.display())));
    }
    Ok(out)
}

/// `encoder = ["microsoft/mdeberta-v3-base", "default"]`: the first that is found, with a notice
/// when it is not the first.
pub(super) fn choose_encoder(
    file: &Path,
    section: &str,
    value: toml::Value,
    notices: &mut Vec<String>,
) -> Result<toml::Value> {
    let toml::Value::Array(choices) = value else { return Ok(value) };
    let mut missing = Vec::new();
    for choice in &choices {
        let toml::Value::String(spec) = choice else {
            return Err(pipeline_error(file, format!("`encoder` in {section}: choices are strings"), ""));
        };
        let spec = expand(file, section, "encoder", spec)?;
        match crate::hf::resolve(Some(&spec)) {
            Ok(_) => {
                if !missing.is_empty() {
                    notices.push(format!("{section}: encoder {} not found; using `{spec}`", missing.join(", ")));
                }
                return Ok(toml::Value::String(spec));
            }
            Err(_) => missing.push(format!("`{spec}`")),
        }
    }
    Err(pipeline_error(
        file,
        format!("{section}: none of the encoders {} is available", missing.join(", ")),
        "put an HF model folder on disk or in the HF cache, or add \"default\" (the bundled encoder) to the list",
    ))
}
