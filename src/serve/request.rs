//! What a request asks for (the routed text, a cost rate or a cost ceiling), checked field by
//! field, and the answers: the ranking of the router's LLMs, and errors in OpenAI's shape.

use serde_json::{Value, json};

use super::{RouteText, RouterInfo};

/// An error answer: `{"error": {"message", "type", "param", "code"}}` as OpenAI's API gives.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: the request's `param` is wrong.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
        }
    }

    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), kind, param: None, code: None }
    }

    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

/// The JSON object of a request body.
pub fn parse_body(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|error| {
        ApiError::invalid(
            "body",
            format!("the body is not JSON (line {}, column {}): {error}", error.line(), error.column()),
        )
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::invalid("body", "the body must be a JSON object")),
    }
}

/// The text of one message's `content`: a string, or the `text` of its text parts.
fn content_text(content: &Value, at: &str) -> Result<String, ApiError> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            for (index, part) in parts.iter().enumerate() {
                let at = format!("{at}[{index}]");
                let Some(part) = part.as_object() else {
                    return Err(ApiError::invalid(at.clone(), format!("`{at}` must be an object")));
                };
                if part.get("type").and_then(Value::as_str) == Some("text") {
                    match part.get("text") {
                        Some(Value::String(text)) => texts.push(text.as_str()),
                        _ => {
                            return Err(ApiError::invalid(
                                format!("{at}.text"),
                                format!("`{at}.text` must be a string"),
                            ));
                        }
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        _ => Err(ApiError::invalid(at, format!("`{at}` must be a string or a list of content parts"))),
    }
}

/// The text to route: `prompt`, or the chosen part of `messages`.
pub fn routed_text(body: &serde_json::Map<String, Value>, mode: RouteText) -> Result<String, ApiError> {
    let text = match (body.get("prompt"), body.get("messages")) {
        (Some(Value::String(prompt)), _) => prompt.clone(),
        (Some(_), _) => return Err(ApiError::invalid("prompt", "`prompt` must be a string")),
        (None, Some(Value::Array(messages))) => {
            let mut chosen = Vec::new();
            for (index, message) in messages.iter().enumerate() {
                let at = format!("messages[{index}]");
                let Some(message) = message.as_object() else {
                    return Err(ApiError::invalid(at.clone(), format!("`{at}` must be an object")));
                };
                let role = match message.get("role") {
                    Some(Value::String(role)) => role.as_str(),
                    _ => return Err(ApiError::invalid(format!("{at}.role"), format!("`{at}.role` must be a string"))),
                };
                let content = content_text(message.get("content").unwrap_or(&Value::Null), &format!("{at}.content"))?;
                match mode {
                    RouteText::LastUser if role == "user" => chosen = vec![content],
                    RouteText::User if role == "user" => chosen.push(content),
                    RouteText::Conversation => chosen.push(content),
                    _ => {}
                }
            }
            if chosen.is_empty() {
                return Err(ApiError::invalid("messages", "`messages` has no user message to route"));
            }
            chosen.join("\n")
        }
        (None, Some(_)) => return Err(ApiError::invalid("messages", "`messages` must be a list of messages")),
        (None, None) => return Err(ApiError::invalid("messages", "give `messages` (OpenAI chat format) or `prompt`")),
    };
    if text.trim().is_empty() {
        return Err(ApiError::invalid("messages", "the text to route is empty"));
    }
    Ok(text)
}

/// A request's cost settings: `cost_rate` (λ ≥ 0) and `max_cost` (> 0), both optional.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostAsk {
    pub cost_rate: Option<f64>,
    pub max_cost: Option<f64>,
}

pub fn cost_ask(body: &serde_json::Map<String, Value>) -> Result<CostAsk, ApiError> {
    let number = |key: &str, ok: fn(f64) -> bool, what: &str| -> Result<Option<f64>, ApiError> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => match value.as_f64() {
                Some(x) if ok(x) => Ok(Some(x)),
                _ => Err(ApiError::invalid(key, format!("`{key}` must be {what}"))),
            },
        }
    };
    Ok(CostAsk {
        cost_rate: number("cost_rate", |x| x >= 0.0 && x.is_finite(), "a non-negative number")?,
        max_cost: number("max_cost", |x| x > 0.0 && x.is_finite(), "a positive number")?,
    })
}

/// One LLM in a decision's ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub index: usize,
    pub score: f64,
    /// score − λ × cost: what the ranking sorts by.
    pub value: f64,
}

/// The router's LLMs ranked by score − λ × cost, best first (the lower index first on ties, as
/// `route` chooses), those above `max_cost` left out.
pub fn rank(info: &RouterInfo, scores: &[f64], rate: f64, ask: CostAsk) -> Result<Vec<Ranked>, ApiError> {
    let needs_costs = rate > 0.0 || ask.max_cost.is_some();
    let costs = match (&info.costs, needs_costs) {
        (Some(costs), _) => Some(costs.as_slice()),
        (None, false) => None,
        (None, true) => {
            let param = if ask.max_cost.is_some() { "max_cost" } else { "cost_rate" };
            return Err(ApiError::invalid(
                param,
                "the router was trained on tables without costs: there is no cost to use",
            ));
        }
    };
    let cost = |index: usize| costs.map_or(0.0, |costs| costs[index]);
    // The penalty `route` charges.
    let values = costs.map_or_else(|| scores.to_vec(), |costs| crate::routing::penalised(scores, costs, rate));
    let mut ranked: Vec<Ranked> = scores
        .iter()
        .zip(values)
        .enumerate()
        .filter(|&(index, _)| ask.max_cost.is_none_or(|most| cost(index) <= most))
        .map(|(index, (&score, value))| Ranked { index, score, value })
        .collect();
    if ranked.is_empty() {
        let cheapest = (0..scores.len()).map(cost).fold(f64::INFINITY, f64::min);
        return Err(ApiError::invalid(
            "max_cost",
            format!(
                "no LLM of the router costs at most {} per query (the cheapest: {cheapest})",
                ask.max_cost.unwrap_or(0.0)
            ),
        ));
    }
    // A stable sort keeps the router's order among equal values.
    ranked.sort_by(|a, b| b.value.total_cmp(&a.value));
    Ok(ranked)
}

/// `/v1/route`'s answer.
pub fn decision_json(info: &RouterInfo, ranked: &[Ranked], rate: f64, decision_ms: f64) -> Value {
    let entries: Vec<Value> = ranked
        .iter()
        .map(|entry| {
            let mut object = serde_json::Map::new();
            object.insert("model".into(), info.models[entry.index].clone().into());
            object.insert("score".into(), entry.score.into());
            if info.probabilities {
                object.insert("probability".into(), entry.score.into());
            }
            if let Some(costs) = &info.costs {
                object.insert("cost".into(), costs[entry.index].into());
            }
            Value::Object(object)
        })
        .collect();
    json!({
        "model": info.models[ranked[0].index],
        "ranked": entries,
        "router": info.kind,
        "cost_rate": rate,
        "decision_ms": decision_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(costs: Option<Vec<f64>>) -> RouterInfo {
        RouterInfo {
            kind: "knn".into(),
            models: vec!["a".into(), "b".into(), "c".into()],
            costs,
            probabilities: false,
            cost_rate: 0.0,
        }
    }

    fn body(text: &str) -> serde_json::Map<String, Value> {
        parse_body(text.as_bytes()).unwrap()
    }

    #[test]
    fn routed_text_follows_the_mode() {
        let request = body(
            r#"{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                {"role": "assistant", "content": null}, {"role": "user", "content": [{"type": "text", "text": "U2"},
                {"type": "image_url", "image_url": {"url": "x"}}]}]}"#,
        );
        assert_eq!(routed_text(&request, RouteText::LastUser).unwrap(), "U2");
        assert_eq!(routed_text(&request, RouteText::User).unwrap(), "U1\nU2");
        assert_eq!(routed_text(&request, RouteText::Conversation).unwrap(), "S\nU1\n\nU2");
        assert_eq!(routed_text(&body(r#"{"prompt": "P"}"#), RouteText::LastUser).unwrap(), "P");
    }

    #[test]
    fn bad_fields_are_named() {
        let error = |text: &str| routed_text(&body(text), RouteText::LastUser).unwrap_err().param.unwrap();
        assert_eq!(error(r#"{"messages": [{"role": "user", "content": 3}]}"#), "messages[0].content");
        assert_eq!(error(r#"{"messages": [{"content": "x"}]}"#), "messages[0].role");
        assert_eq!(
            error(r#"{"messages": [{"role": "user", "content": [{"type": "text"}]}]}"#),
            "messages[0].content[0].text"
        );
        assert_eq!(error(r#"{"messages": [{"role": "system", "content": "x"}]}"#), "messages");
        assert_eq!(error(r#"{"prompt": 1}"#), "prompt");
        assert_eq!(error(r#"{"prompt": "  "}"#), "messages");
        assert_eq!(cost_ask(&body(r#"{"cost_rate": -1}"#)).unwrap_err().param.unwrap(), "cost_rate");
        assert_eq!(cost_ask(&body(r#"{"max_cost": "x"}"#)).unwrap_err().param.unwrap(), "max_cost");
        assert_eq!(parse_body(b"[1]").unwrap_err().param.unwrap(), "body");
    }

    #[test]
    fn ranking_charges_costs_and_keeps_the_first_on_ties() {
        let scores = [0.5, 0.5, 0.4];
        let order = |ranked: Vec<Ranked>| ranked.iter().map(|r| r.index).collect::<Vec<_>>();
        assert_eq!(order(rank(&info(None), &scores, 0.0, CostAsk::default()).unwrap()), [0, 1, 2]);
        let costs = info(Some(vec![10.0, 1.0, 0.0]));
        // λ = 0.02: 0.3, 0.48, 0.4.
        assert_eq!(order(rank(&costs, &scores, 0.02, CostAsk::default()).unwrap()), [1, 2, 0]);
        let ask = CostAsk { cost_rate: None, max_cost: Some(0.5) };
        assert_eq!(order(rank(&costs, &scores, 0.0, ask).unwrap()), [2]);
        let none = CostAsk { cost_rate: None, max_cost: Some(1e-9) };
        assert!(rank(&info(Some(vec![1.0; 3])), &scores, 0.0, none).is_err());
        assert_eq!(rank(&info(None), &scores, 0.1, CostAsk::default()).unwrap_err().param.unwrap(), "cost_rate");
        // The first of the ranking is what `route` charges and picks.
        let charge: Vec<f64> = [10.0, 1.0, 0.0].iter().map(|c| 0.02 * c).collect();
        assert_eq!(
            rank(&costs, &scores, 0.02, CostAsk::default()).unwrap()[0].index,
            crate::routing::charged_argmax(&scores, Some(&charge))
        );
    }
}
