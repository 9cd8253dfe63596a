//! An oslo.policy-compatible rule engine: `rule:`, `role:`, generic
//! `attr:%(target.path)s` and literal checks, `@`, `!`, `and`/`or`/`not`,
//! parentheses. Services register upstream's default rules; a policy.yaml
//! (or JSON) overrides any of them.

use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    True,
    False,
    Rule(String),
    Role(String),
    /// `kind:match`; `match` may hold `%(name)s` substitutions from the target.
    Generic {
        kind: String,
        matcher: String,
    },
    And(Vec<Check>),
    Or(Vec<Check>),
    Not(Box<Check>),
}

#[derive(Debug, thiserror::Error)]
#[error("invalid policy rule `{rule}`: {why}")]
pub struct ParseError {
    pub rule: String,
    pub why: String,
}

fn tokenize(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in s.split_whitespace() {
        let mut w = word;
        while let Some(rest) = w.strip_prefix('(') {
            out.push("(".into());
            w = rest;
        }
        let mut closing = 0;
        while let Some(rest) = w.strip_suffix(')') {
            closing += 1;
            w = rest;
        }
        if !w.is_empty() {
            out.push(w.to_string());
        }
        for _ in 0..closing {
            out.push(")".into());
        }
    }
    out
}

struct Parser<'a> {
    toks: Vec<String>,
    pos: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn err(&self, why: &str) -> ParseError {
        ParseError {
            rule: self.src.to_string(),
            why: why.to_string(),
        }
    }
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.pos).map(String::as_str)
    }
    fn or_expr(&mut self) -> Result<Check, ParseError> {
        let mut items = vec![self.and_expr()?];
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("or")) {
            self.pos += 1;
            items.push(self.and_expr()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Check::Or(items)
        })
    }
    fn and_expr(&mut self) -> Result<Check, ParseError> {
        let mut items = vec![self.not_expr()?];
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("and")) {
            self.pos += 1;
            items.push(self.not_expr()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Check::And(items)
        })
    }
    fn not_expr(&mut self) -> Result<Check, ParseError> {
        if self.peek().is_some_and(|t| t.eq_ignore_ascii_case("not")) {
            self.pos += 1;
            return Ok(Check::Not(Box::new(self.not_expr()?)));
        }
        self.atom()
    }
    fn atom(&mut self) -> Result<Check, ParseError> {
        let tok = self
            .peek()
            .ok_or_else(|| self.err("unexpected end"))?
            .to_string();
        self.pos += 1;
        if tok == "(" {
            let inner = self.or_expr()?;
            if self.peek() != Some(")") {
                return Err(self.err("missing )"));
            }
            self.pos += 1;
            return Ok(inner);
        }
        if tok == ")" {
            return Err(self.err("unexpected )"));
        }
        parse_check(&tok).ok_or_else(|| self.err("bad check"))
    }
}

fn parse_check(tok: &str) -> Option<Check> {
    match tok {
        "@" => return Some(Check::True),
        "!" => return Some(Check::False),
        _ => {}
    }
    let (kind, matcher) = tok.split_once(':')?;
    Some(match kind {
        "rule" => Check::Rule(matcher.to_string()),
        "role" => Check::Role(matcher.to_string()),
        "http" | "https" => Check::False, // remote checks are not supported
        _ => Check::Generic {
            kind: kind.to_string(),
            matcher: matcher.to_string(),
        },
    })
}

/// Parses one rule string; the empty string means "always allow" as in oslo.
pub fn parse(rule: &str) -> Result<Check, ParseError> {
    let toks = tokenize(rule);
    if toks.is_empty() {
        return Ok(Check::True);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        src: rule,
    };
    let c = p.or_expr()?;
    if p.pos != p.toks.len() {
        return Err(p.err("trailing tokens"));
    }
    Ok(c)
}

/// Looks up `path` in `v`: a flat key first (`"target.user.id"`), then dotted.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(x) = v.get(path) {
        return Some(x);
    }
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// Python's `str()` of a JSON value, which is what oslo compares.
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// `%(name)s` substitution from the target; `None` if a key is missing.
fn substitute(matcher: &str, target: &Value) -> Option<String> {
    let mut out = String::new();
    let mut rest = matcher;
    while let Some(start) = rest.find("%(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find(")s")?;
        let key = &after[..end];
        out.push_str(&py_str(lookup(target, key)?));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: HashMap<String, Check>,
}

impl Policy {
    /// Builds a policy from `(name, rule)` defaults.
    pub fn from_defaults<'a>(
        defaults: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Policy, ParseError> {
        let mut rules = HashMap::new();
        for (name, rule) in defaults {
            rules.insert(name.to_string(), parse(rule)?);
        }
        Ok(Policy { rules })
    }

    /// Applies overrides from a policy.yaml or policy.json file.
    pub fn load_overrides(&mut self, path: &Path) -> Result<usize, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let map: HashMap<String, String> =
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let n = map.len();
        for (name, rule) in map {
            let check = parse(&rule).map_err(|e| e.to_string())?;
            self.rules.insert(name, check);
        }
        Ok(n)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.rules.contains_key(name)
    }

    /// Evaluates rule `name` for `creds` against `target`. Unknown rules fall
    /// back to `default` when registered, else deny.
    pub fn enforce(&self, name: &str, target: &Value, creds: &Value) -> bool {
        match self.rules.get(name).or_else(|| self.rules.get("default")) {
            Some(c) => self.eval(c, target, creds, 0),
            None => false,
        }
    }

    fn eval(&self, c: &Check, target: &Value, creds: &Value, depth: usize) -> bool {
        if depth > 32 {
            return false; // a rule loop in an override file
        }
        match c {
            Check::True => true,
            Check::False => false,
            Check::Rule(r) => self
                .rules
                .get(r)
                .is_some_and(|c| self.eval(c, target, creds, depth + 1)),
            Check::Role(r) => {
                let Some(want) = substitute(r, target) else {
                    return false;
                };
                let want = want.to_lowercase();
                creds
                    .get("roles")
                    .and_then(Value::as_array)
                    .is_some_and(|roles| {
                        roles
                            .iter()
                            .any(|x| x.as_str().is_some_and(|s| s.to_lowercase() == want))
                    })
            }
            Check::Generic { kind, matcher } => {
                let Some(m) = substitute(matcher, target) else {
                    return false;
                };
                // A literal on the left (`'x':%(y)s`, `True:...`) compares constants.
                if let Some(lit) = literal(kind) {
                    return lit == m;
                }
                // An absent (or null) credential never matches (oslo: KeyError → False).
                match lookup(creds, kind) {
                    Some(Value::Array(items)) => items.iter().any(|i| py_str(i) == m),
                    Some(Value::Null) | None => false,
                    Some(v) => py_str(v) == m,
                }
            }
            Check::And(items) => items.iter().all(|c| self.eval(c, target, creds, depth + 1)),
            Check::Or(items) => items.iter().any(|c| self.eval(c, target, creds, depth + 1)),
            Check::Not(c) => !self.eval(c, target, creds, depth + 1),
        }
    }
}

fn literal(kind: &str) -> Option<String> {
    if kind == "True" || kind == "False" || kind.parse::<f64>().is_ok() {
        return Some(kind.to_string());
    }
    for q in ['\'', '"'] {
        if kind.len() >= 2 && kind.starts_with(q) && kind.ends_with(q) {
            return Some(kind[1..kind.len() - 1].to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pol() -> Policy {
        Policy::from_defaults([
            ("admin_required", "role:admin or is_admin:1"),
            ("owner", "user_id:%(user_id)s"),
            ("admin_or_owner", "rule:admin_required or rule:owner"),
            ("sys", "role:reader and system_scope:all"),
            ("dom", "(role:reader and domain_id:%(target.user.domain_id)s) or user_id:%(target.user.id)s"),
            ("neg", "not role:admin"),
            ("lit", "'default':%(target.domain_id)s"),
            ("loop", "rule:loop"),
        ])
        .unwrap()
    }

    #[test]
    fn evaluates_like_oslo() {
        let p = pol();
        let admin = json!({"roles": ["Admin"], "user_id": "u1"});
        let member = json!({"roles": ["member", "reader"], "user_id": "u2", "domain_id": "d1"});
        assert!(p.enforce("admin_required", &json!({}), &admin));
        assert!(!p.enforce("admin_required", &json!({}), &member));
        assert!(p.enforce("admin_or_owner", &json!({"user_id": "u2"}), &member));
        assert!(!p.enforce("admin_or_owner", &json!({"user_id": "u3"}), &member));
        assert!(!p.enforce("sys", &json!({}), &member));
        assert!(p.enforce(
            "sys",
            &json!({}),
            &json!({"roles": ["reader"], "system_scope": "all"})
        ));
        assert!(p.enforce(
            "dom",
            &json!({"target": {"user": {"domain_id": "d1", "id": "x"}}}),
            &member
        ));
        assert!(p.enforce(
            "dom",
            &json!({"target.user.domain_id": "d2", "target.user.id": "u2"}),
            &member
        ));
        assert!(!p.enforce(
            "dom",
            &json!({"target": {"user": {"domain_id": "d2", "id": "x"}}}),
            &member
        ));
        assert!(p.enforce("neg", &json!({}), &member));
        assert!(p.enforce("lit", &json!({"target": {"domain_id": "default"}}), &member));
        assert!(!p.enforce("loop", &json!({}), &admin));
        assert!(!p.enforce("missing", &json!({}), &admin));
    }

    #[test]
    fn parse_errors() {
        assert!(parse("(role:admin").is_err());
        assert!(parse("role:admin)").is_err());
        assert!(parse("role:admin or").is_err());
        assert_eq!(parse("").unwrap(), Check::True);
    }
}
