//! convert: RouterBench CSV and PKL (pandas pickles, read without executing them) → scored
//! tables with per-model quality and cost, one table per `eval_name`.
//!
//! A RouterBench frame has `sample_id`, `prompt` (a stringified Python list), `eval_name`, one
//! quality column per model, `<model>|total_cost`, `<model>|model_response` and
//! `oracle_model_to_route_to` (README, `routerdc convert`). Both formats are reduced to
//! the same columns ([`ColumnData`]) before anything else happens, so the CSV and PKL paths give
//! identical tables. The dataset's own costs are kept; nothing is recomputed from prices.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::io::pickle::pandas::{Budget, ColumnData, read_frame_columns};
use crate::table::{MetricKind, ScoredTable, Split};

const SAMPLE_ID: &str = "sample_id";
const PROMPT: &str = "prompt";
const EVAL_NAME: &str = "eval_name";
const COST_SUFFIX: &str = "|total_cost";
/// Columns that are neither a model's quality nor its cost.
const OTHER_COLUMNS: [&str; 7] = ["", "Unnamed: 0", "index", "oracle_model_to_route_to", SAMPLE_ID, PROMPT, EVAL_NAME];

/// Columns convert reads past: the responses and RouterBench's own oracle choice.
fn unused_column(name: &str) -> bool {
    name.ends_with("|model_response") || name == "oracle_model_to_route_to"
}

/// Settings of `routerdc convert`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConvertConfig {
    /// Folder for the scored tables, one `<eval_name>.parquet` per task.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Cut each prompt to its first N characters (the RouterDC reference uses 1400).
    #[arg(long, value_name = "N")]
    pub max_prompt_chars: Option<usize>,
    /// RouterBench CSV or PKL files (told apart by content). A `_train`/`_test` suffix of the
    /// file name sets the rows' split.
    #[arg(required = true, value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
}

/// What a conversion saw besides the tables.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ConvertCounts {
    pub rows: usize,
    /// Rows dropped because some model's quality was missing (as the reference does).
    pub dropped_missing_quality: usize,
    /// Rows whose `sample_id` was seen before (in any row); those kept get `#2`, `#3`... appended.
    pub repeated_ids: usize,
}

/// A file read into columns.
fn read_columns(path: &Path) -> Result<Vec<(String, ColumnData)>> {
    let bytes = crate::io::map_file(path)?;
    let bytes: &[u8] = &bytes;
    if bytes.is_empty() {
        return Err(Error::EmptyFile { path: path.to_path_buf() });
    }
    let layout = |message: String| Error::Layout { path: path.to_path_buf(), message };
    // Protocols 2 to 5 start with PROTO (0x80); protocols 0 and 1 with an opcode such as
    // GLOBAL (`c<module>\n<name>\n`) or MARK, on a first line that has no comma, unlike a CSV header.
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let old_pickle = matches!(bytes[0], b'c' | b'(' | b'}' | b']') && !first_line.contains(&b',');
    if bytes[0] == 0x80 || old_pickle {
        let pickle = crate::io::pickle::vm::parse(bytes).map_err(|e| layout(format!("not a readable pickle: {e}")))?;
        // The columns convert never uses are not materialised (their text is most of the file).
        let wanted = |name: &str| !unused_column(name);
        let frame =
            read_frame_columns(&pickle.root, &mut Budget::for_input(bytes.len(), 4), &wanted).map_err(layout)?;
        return Ok(frame.columns);
    }
    // polars reads (and maps) the CSV file itself.
    let file = std::fs::File::open(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    let frame = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .into_reader_with_file_handle(file)
        .finish()
        .map_err(|e| layout(format!("not a readable CSV or pickle: {e}")))?;
    // A file cut off mid-row reads as a last row with its trailing fields missing; refuse it
    // rather than drop that row as one with a missing quality.
    let ends_a_line = bytes.ends_with(b"\n") || bytes.ends_with(b"\r");
    if !ends_a_line && frame.height() > 0 {
        let last = frame.height() - 1;
        let trailing_missing = frame.columns().last().is_some_and(|column| column.get(last).is_ok_and(|v| v.is_null()));
        if trailing_missing {
            return Err(layout(format!(
                "the file ends inside row {} (no line end after it, its last fields missing): was it cut off?",
                last + 1
            )));
        }
    }
    frame
        .columns()
        .iter()
        .map(|column| {
            let values = column.str().map_err(Error::polars(format!("reading `{}`", path.display())))?;
            let texts = values.iter().map(|v| v.map(str::to_owned)).collect();
            Ok((column.name().to_string(), ColumnData::Text(texts)))
        })
        .collect()
}

/// Read every input and build one table per `eval_name`.
pub fn convert(config: &ConvertConfig) -> Result<(Vec<ScoredTable>, ConvertCounts)> {
    let mut counts = ConvertCounts::default();
    let mut tasks: BTreeMap<String, ScoredTable> = BTreeMap::new();
    let mut seen_ids: BTreeMap<(String, String), usize> = BTreeMap::new();
    for path in &config.inputs {
        let columns = read_columns(path)?;
        let split = path.file_stem().and_then(|s| s.to_str()).and_then(Split::from_dataset_name);
        let frame = RouterBenchFrame::new(path, &columns)?;
        for row in 0..frame.n_rows {
            counts.rows += 1;
            let eval_name = frame.text(frame.eval_name, row).ok_or_else(|| frame.error(row, EVAL_NAME, "is empty"))?;
            // The task's name becomes its table's file name.
            crate::table::check_name(&eval_name)
                .map_err(|reason| frame.error(row, EVAL_NAME, &format!("holds {reason}")))?;
            let sample_id = frame.text(frame.sample_id, row).ok_or_else(|| frame.error(row, SAMPLE_ID, "is empty"))?;
            // Repeats are counted over every row; a kept row keeps its occurrence number.
            let repeat = seen_ids.entry((eval_name.clone(), sample_id.clone())).or_insert(0);
            *repeat += 1;
            let occurrence = *repeat;
            if occurrence > 1 {
                counts.repeated_ids += 1;
            }
            let Some(qualities) = frame.qualities(row)? else {
                counts.dropped_missing_quality += 1;
                continue;
            };
            let costs = frame.costs(row)?;
            let query_id = if occurrence == 1 { sample_id } else { format!("{sample_id}#{occurrence}") };
            let raw_prompt = frame.text(frame.prompt, row).unwrap_or_default();
            let mut text =
                prompt_text(&raw_prompt).ok_or_else(|| frame.error(row, PROMPT, "is not a Python list of strings"))?;
            if let Some(max) = config.max_prompt_chars
                && let Some((cut, _)) = text.char_indices().nth(max)
            {
                text.truncate(cut);
            }
            let table = tasks.entry(eval_name.clone()).or_insert_with(|| ScoredTable {
                dataset: eval_name.clone(),
                kind: MetricKind::CostAware,
                models: frame.models.clone(),
                query_ids: Vec::new(),
                texts: Vec::new(),
                splits: Vec::new(),
                cluster_ids: Vec::new(),
                scores: Vec::new(),
                costs: Some(Vec::new()),
            });
            if table.models != frame.models {
                return Err(Error::setting(
                    "inputs",
                    format!(
                        "`{}` lists the models {:?}, but an earlier file {:?}",
                        path.display(),
                        frame.models,
                        table.models
                    ),
                ));
            }
            table.query_ids.push(query_id);
            table.texts.push(text);
            table.splits.push(split);
            table.cluster_ids.push(None);
            table.scores.extend(qualities);
            table.costs.as_mut().expect("convert tables have costs").extend(costs);
        }
    }
    let tables: Vec<ScoredTable> = tasks.into_values().collect();
    for table in &tables {
        table.validate(Path::new(&table.dataset))?;
    }
    if tables.is_empty() {
        return Err(Error::setting("inputs", "no row has a quality value for every model"));
    }
    Ok((tables, counts))
}

/// Convert and write one table per `eval_name`.
pub fn run(config: &ConvertConfig) -> Result<(Vec<ScoredTable>, ConvertCounts, Vec<PathBuf>)> {
    let (tables, counts) = convert(config)?;
    let paths = crate::io::write_tables(&tables, &config.out)?;
    Ok((tables, counts, paths))
}

/// The columns of one RouterBench file, located by name.
struct RouterBenchFrame<'a> {
    path: &'a Path,
    columns: &'a [(String, ColumnData)],
    n_rows: usize,
    sample_id: usize,
    prompt: usize,
    eval_name: usize,
    models: Vec<String>,
    quality: Vec<usize>,
    cost: Vec<usize>,
}

impl<'a> RouterBenchFrame<'a> {
    fn new(path: &'a Path, columns: &'a [(String, ColumnData)]) -> Result<Self> {
        let layout = |message: String| Error::Layout { path: path.to_path_buf(), message };
        let find = |name: &str| {
            columns.iter().position(|(n, _)| n == name).ok_or_else(|| layout(format!("column `{name}` is missing")))
        };
        let (sample_id, prompt, eval_name) = (find(SAMPLE_ID)?, find(PROMPT)?, find(EVAL_NAME)?);
        let mut models = Vec::new();
        let (mut quality, mut cost) = (Vec::new(), Vec::new());
        for (index, (name, _)) in columns.iter().enumerate() {
            if name.contains('|') || OTHER_COLUMNS.contains(&name.as_str()) {
                continue;
            }
            let cost_name = format!("{name}{COST_SUFFIX}");
            let cost_index = columns.iter().position(|(n, _)| *n == cost_name).ok_or_else(|| {
                layout(format!("model `{name}` has no `{cost_name}` column; every quality column needs its cost"))
            })?;
            models.push(name.clone());
            quality.push(index);
            cost.push(cost_index);
        }
        if models.is_empty() {
            return Err(layout("it has no model quality columns".into()));
        }
        let n_rows = columns[0].1.len();
        Ok(RouterBenchFrame { path, columns, n_rows, sample_id, prompt, eval_name, models, quality, cost })
    }

    fn error(&self, row: usize, column: &str, message: &str) -> Error {
        Error::Layout {
            path: self.path.to_path_buf(),
            message: format!("row {}: column `{column}` {message}", row + 1),
        }
    }

    fn text(&self, column: usize, row: usize) -> Option<String> {
        match &self.columns[column].1 {
            ColumnData::Text(values) => values[row].clone(),
            ColumnData::Int(values) => Some(values[row].to_string()),
            ColumnData::Float(values) => Some(values[row].to_string()),
            ColumnData::Bool(values) => Some(values[row].to_string()),
        }
    }

    fn number(&self, column: usize, row: usize) -> Result<Option<f64>> {
        let name = &self.columns[column].0;
        let value = match &self.columns[column].1 {
            ColumnData::Float(values) => Some(values[row]).filter(|v| !v.is_nan()),
            ColumnData::Int(values) => Some(values[row] as f64),
            ColumnData::Bool(values) => Some(f64::from(u8::from(values[row]))),
            ColumnData::Text(values) => match values[row].as_deref().map(str::trim) {
                None | Some("" | "nan" | "NaN") => None,
                Some(text) => Some(
                    text.parse::<f64>().map_err(|_| self.error(row, name, &format!("holds `{text}`, not a number")))?,
                ),
            },
        };
        Ok(value)
    }

    /// Each model's quality, or `None` when any is missing.
    fn qualities(&self, row: usize) -> Result<Option<Vec<f64>>> {
        let mut values = Vec::with_capacity(self.quality.len());
        for &column in &self.quality {
            match self.number(column, row)? {
                Some(value) if (0.0..=1.0).contains(&value) => values.push(value),
                Some(value) => {
                    return Err(self.error(row, &self.columns[column].0, &format!("is {value}, outside [0, 1]")));
                }
                None => return Ok(None),
            }
        }
        Ok(Some(values))
    }

    fn costs(&self, row: usize) -> Result<Vec<f64>> {
        self.cost
            .iter()
            .map(|&column| match self.number(column, row)? {
                Some(cost) if cost >= 0.0 && cost.is_finite() => Ok(cost),
                Some(cost) => Err(self.error(row, &self.columns[column].0, &format!("is {cost}, not a cost"))),
                None => Err(self.error(row, &self.columns[column].0, "is missing")),
            })
            .collect()
    }
}

/// The text of a RouterBench `prompt` cell: a Python list literal of strings (`str(list)`),
/// whose items are joined with newlines; a cell that is not a list is taken as it is.
pub fn prompt_text(cell: &str) -> Option<String> {
    let trimmed = cell.trim();
    if !trimmed.starts_with('[') {
        return Some(cell.to_owned());
    }
    let items = python_string_list(trimmed)?;
    Some(items.join("\n"))
}

/// Parse `['a', "b\n"]` as Python's `ast.literal_eval` would (strings only).
fn python_string_list(text: &str) -> Option<Vec<String>> {
    let bytes = text.as_bytes();
    let mut items = Vec::new();
    if bytes.first() != Some(&b'[') {
        return None;
    }
    let mut i = 1;
    loop {
        while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace() || *b == b',') {
            i += 1;
        }
        match *bytes.get(i)? {
            b']' => break,
            quote @ (b'\'' | b'"') => {
                let (item, next) = python_string_at(text, i + 1, quote)?;
                items.push(item);
                i = next;
            }
            _ => return None,
        }
    }
    text[i + 1..].trim().is_empty().then_some(items)
}

/// The string literal whose body starts at byte `start`, and the byte after its closing quote.
/// Runs without escapes are copied whole (prompts are long; escapes are few).
fn python_string_at(text: &str, start: usize, quote: u8) -> Option<(String, usize)> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = start;
    loop {
        let j = i + memchr::memchr2(quote, b'\\', &bytes[i..])?;
        out.push_str(&text[i..j]);
        if bytes[j] == quote {
            return Some((out, j + 1));
        }
        let escaped = *bytes.get(j + 1)?;
        i = j + 2;
        match escaped {
            b'n' => out.push('\n'),
            b't' => out.push('\t'),
            b'r' => out.push('\r'),
            b'0' => out.push('\0'),
            b'a' => out.push('\u{07}'),
            b'b' => out.push('\u{08}'),
            b'f' => out.push('\u{0c}'),
            b'v' => out.push('\u{0b}'),
            b'\\' | b'\'' | b'"' => out.push(char::from(escaped)),
            b'x' | b'u' | b'U' => {
                let width = match escaped {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let hex = text.get(i..i + width)?;
                out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
                i += width;
            }
            b'\n' => {}
            _ => {
                // An unknown escape stays as written (Python keeps the backslash).
                out.push('\\');
                i = j + 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_python_list_literals() {
        assert_eq!(prompt_text(r"['Which?\nA) dry palms\n']").as_deref(), Some("Which?\nA) dry palms\n"));
        assert_eq!(prompt_text(r#"["it's", 'a \'b\' \u00e9\x41']"#).as_deref(), Some("it's\na 'b' éA"));
        assert_eq!(prompt_text("plain text").as_deref(), Some("plain text"));
        assert_eq!(prompt_text("['unterminated"), None);
        assert_eq!(prompt_text("[1, 2]"), None);
    }
}
