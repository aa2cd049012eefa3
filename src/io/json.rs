//! Readable serde_json errors, shared by every JSON reader: the message without serde_json's
//! own "at line L column C" (callers report the place their way), and the non-JSON number tokens
//! Python's `json` writes (`NaN`, `Infinity`, `-Infinity`) named with the field they sit in.

/// `error`'s message for `bytes`, the document it was raised on.
pub fn describe_error(bytes: &[u8], error: &serde_json::Error) -> String {
    let (line, column) = (error.line(), error.column());
    let full = error.to_string();
    let message = full.strip_suffix(&format!(" at line {line} column {column}")).unwrap_or(&full);
    match non_json_number_at(bytes, line, column) {
        Some(token) => {
            let field = field_before(bytes, line, column).map(|f| format!("field `{f}`: ")).unwrap_or_default();
            format!("{field}`{token}` is not a JSON number (Python's json writes it for a float NaN or inf)")
        }
        None => message.to_owned(),
    }
}

/// The byte offset where 1-based `line` starts.
fn line_start(bytes: &[u8], line: usize) -> Option<usize> {
    if line <= 1 {
        return Some(0);
    }
    memchr::memchr_iter(b'\n', bytes).nth(line - 2).map(|i| i + 1)
}

/// The non-standard number token at a 1-based line and column.
fn non_json_number_at(bytes: &[u8], line: usize, column: usize) -> Option<&'static str> {
    let at = line_start(bytes, line)? + column.saturating_sub(1);
    // serde_json points at the token's first byte or one past it; look at both.
    let window = &bytes[at.saturating_sub(1).min(bytes.len())..(at + 10).min(bytes.len())];
    ["-Infinity", "Infinity", "NaN"]
        .into_iter()
        .find(|token| window.windows(token.len()).any(|w| w == token.as_bytes()))
}

/// The nearest `"key":` before a 1-based line and column, to name the field an error sits in.
fn field_before(bytes: &[u8], line: usize, column: usize) -> Option<String> {
    let end = (line_start(bytes, line)? + column).min(bytes.len());
    let before = std::str::from_utf8(&bytes[..end]).ok()?;
    let colon = before.rfind("\":")?;
    let open = before[..colon].rfind('"')?;
    Some(before[open + 1..colon].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_is_named_with_its_field_on_any_line() {
        let text = b"{\"a\": 1,\n \"resps\": [[[NaN, false]]]}";
        let error = serde_json::from_slice::<serde_json::Value>(text).unwrap_err();
        let message = describe_error(text, &error);
        assert!(message.starts_with("field `resps`: `NaN` is not a JSON number"), "{message}");
        let plain = serde_json::from_slice::<serde_json::Value>(b"[1,").unwrap_err();
        assert!(!describe_error(b"[1,", &plain).contains("at line"));
    }
}
