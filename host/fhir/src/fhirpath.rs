//! A FHIRPath subset for `SubscriptionTopic.resourceTrigger.fhirPathCriteria`: the variables
//! `%previous`, `%current` (and `%resource`, the current one), member navigation, string,
//! boolean and integer literals, `empty()`, `exists()`, `not()`, `=`, `!=`, `|` (union),
//! `and`, `or`, parentheses. Collections flow as in FHIRPath (navigation flattens lists; an
//! equality with an empty side is empty); in a boolean context an empty collection is false and
//! a collection of booleans is true when any is (what the specification's examples expect of
//! `a | b`). Bounded: expressions of at most 1,024 characters and 32 levels of nesting.

use serde_json::Value;

pub const MAX_EXPRESSION_CHARS: usize = 1024;
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FhirPathError {
    #[error("the expression is longer than {MAX_EXPRESSION_CHARS} characters")]
    TooLong,
    #[error("the expression nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("FHIRPath: {0}")]
    Syntax(String),
    #[error("FHIRPath: `{0}` is not supported here")]
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Literal(Value),
    Variable(String),
    Member(Box<Expr>, String),
    Call(Box<Expr>, String),
    Equal(Box<Expr>, Box<Expr>, bool),
    Union(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// A parsed expression, checked once, evaluated per change.
#[derive(Debug, Clone)]
pub struct FhirPath(Expr);

impl FhirPath {
    pub fn parse(text: &str) -> Result<FhirPath, FhirPathError> {
        if text.chars().count() > MAX_EXPRESSION_CHARS {
            return Err(FhirPathError::TooLong);
        }
        let tokens = tokenize(text)?;
        let mut p = Parser {
            tokens,
            at: 0,
            depth: 0,
        };
        let e = p.or()?;
        if p.at != p.tokens.len() {
            return Err(FhirPathError::Syntax(format!(
                "unexpected `{}`",
                p.tokens[p.at].text()
            )));
        }
        Ok(FhirPath(e))
    }

    /// True when the expression holds for the change.
    pub fn holds(&self, previous: Option<&Value>, current: Option<&Value>) -> bool {
        truthy(&eval(&self.0, previous, current))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Variable(String),
    Str(String),
    Int(i64),
    Dot,
    Open,
    Close,
    Eq,
    Ne,
    Pipe,
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::Ident(s) | Token::Variable(s) | Token::Str(s) => s.clone(),
            Token::Int(n) => n.to_string(),
            Token::Dot => ".".into(),
            Token::Open => "(".into(),
            Token::Close => ")".into(),
            Token::Eq => "=".into(),
            Token::Ne => "!=".into(),
            Token::Pipe => "|".into(),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, FhirPathError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '.' => {
                out.push(Token::Dot);
                i += 1;
            }
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '|' => {
                out.push(Token::Pipe);
                i += 1;
            }
            '=' => {
                out.push(Token::Eq);
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Token::Ne);
                i += 2;
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(FhirPathError::Syntax("an unterminated string".into())),
                        Some('\'') => break,
                        Some('\\') if i + 1 < chars.len() => {
                            s.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                i += 1;
                out.push(Token::Str(s));
            }
            '%' => {
                let start = i + 1;
                i = start;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Token::Variable(chars[start..i].iter().collect()));
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                let n: String = chars[start..i].iter().collect();
                out.push(Token::Int(n.parse().map_err(|_| {
                    FhirPathError::Syntax(format!("`{n}` is not an integer"))
                })?));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Token::Ident(chars[start..i].iter().collect()));
            }
            c => return Err(FhirPathError::Unsupported(c.to_string())),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(w)) if w == word)
    }

    fn enter(&mut self) -> Result<(), FhirPathError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FhirPathError::TooDeep);
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, FhirPathError> {
        self.enter()?;
        let mut e = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, FhirPathError> {
        let mut e = self.equality()?;
        while self.keyword("and") {
            self.at += 1;
            e = Expr::And(Box::new(e), Box::new(self.equality()?));
        }
        Ok(e)
    }

    fn equality(&mut self) -> Result<Expr, FhirPathError> {
        let e = self.union()?;
        match self.peek() {
            Some(Token::Eq) => {
                self.at += 1;
                Ok(Expr::Equal(Box::new(e), Box::new(self.union()?), true))
            }
            Some(Token::Ne) => {
                self.at += 1;
                Ok(Expr::Equal(Box::new(e), Box::new(self.union()?), false))
            }
            _ => Ok(e),
        }
    }

    fn union(&mut self) -> Result<Expr, FhirPathError> {
        let mut e = self.path()?;
        while self.peek() == Some(&Token::Pipe) {
            self.at += 1;
            e = Expr::Union(Box::new(e), Box::new(self.path()?));
        }
        Ok(e)
    }

    fn path(&mut self) -> Result<Expr, FhirPathError> {
        let mut e = self.term()?;
        while self.peek() == Some(&Token::Dot) {
            self.at += 1;
            let Some(Token::Ident(name)) = self.peek().cloned() else {
                return Err(FhirPathError::Syntax("a name after `.`".into()));
            };
            self.at += 1;
            if self.peek() == Some(&Token::Open) {
                self.at += 1;
                if self.peek() != Some(&Token::Close) {
                    return Err(FhirPathError::Unsupported(format!("{name}(...)")));
                }
                self.at += 1;
                if !matches!(name.as_str(), "empty" | "exists" | "not") {
                    return Err(FhirPathError::Unsupported(format!("{name}()")));
                }
                e = Expr::Call(Box::new(e), name);
            } else {
                e = Expr::Member(Box::new(e), name);
            }
        }
        Ok(e)
    }

    fn term(&mut self) -> Result<Expr, FhirPathError> {
        let t = self
            .peek()
            .cloned()
            .ok_or_else(|| FhirPathError::Syntax("the expression ends too soon".into()))?;
        self.at += 1;
        match t {
            Token::Open => {
                let e = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(FhirPathError::Syntax("a missing `)`".into()));
                }
                self.at += 1;
                Ok(e)
            }
            Token::Str(s) => Ok(Expr::Literal(Value::String(s))),
            Token::Int(n) => Ok(Expr::Literal(Value::from(n))),
            Token::Ident(w) if w == "true" || w == "false" => {
                Ok(Expr::Literal(Value::Bool(w == "true")))
            }
            Token::Variable(v) if matches!(v.as_str(), "previous" | "current" | "resource") => {
                Ok(Expr::Variable(v))
            }
            Token::Variable(v) => Err(FhirPathError::Unsupported(format!("%{v}"))),
            t => Err(FhirPathError::Syntax(format!("unexpected `{}`", t.text()))),
        }
    }
}

fn eval(e: &Expr, previous: Option<&Value>, current: Option<&Value>) -> Vec<Value> {
    match e {
        Expr::Literal(v) => vec![v.clone()],
        Expr::Variable(v) => match v.as_str() {
            "previous" => previous.cloned().into_iter().collect(),
            _ => current.cloned().into_iter().collect(),
        },
        Expr::Member(inner, name) => eval(inner, previous, current)
            .iter()
            .flat_map(|v| match v.get(name) {
                Some(Value::Array(items)) => items.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(x) => vec![x.clone()],
            })
            .collect(),
        Expr::Call(inner, f) => {
            let items = eval(inner, previous, current);
            vec![Value::Bool(match f.as_str() {
                "empty" => items.is_empty(),
                "exists" => !items.is_empty(),
                _ => !truthy(&items),
            })]
        }
        Expr::Equal(a, b, equal) => {
            let (a, b) = (eval(a, previous, current), eval(b, previous, current));
            if a.is_empty() || b.is_empty() {
                Vec::new()
            } else {
                vec![Value::Bool((a == b) == *equal)]
            }
        }
        Expr::Union(a, b) => {
            let mut items = eval(a, previous, current);
            for v in eval(b, previous, current) {
                if !items.contains(&v) {
                    items.push(v);
                }
            }
            items
        }
        Expr::And(a, b) => {
            vec![Value::Bool(
                truthy(&eval(a, previous, current)) && truthy(&eval(b, previous, current)),
            )]
        }
        Expr::Or(a, b) => {
            vec![Value::Bool(
                truthy(&eval(a, previous, current)) || truthy(&eval(b, previous, current)),
            )]
        }
    }
}

/// A collection in a boolean context.
fn truthy(items: &[Value]) -> bool {
    items.iter().any(|v| v.as_bool().unwrap_or(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_specifications_criteria_evaluate_as_intended() {
        let admission =
            FhirPath::parse("%previous.status!='in-progress' and %current.status='in-progress'")
                .unwrap();
        let (planned, active) = (
            json!({"status": "planned"}),
            json!({"status": "in-progress"}),
        );
        assert!(admission.holds(Some(&planned), Some(&active)));
        assert!(!admission.holds(Some(&active), Some(&active)));
        let completion = FhirPath::parse(
            "(%previous.empty() | (%previous.status != 'completed')) and (%current.status = 'completed')",
        )
        .unwrap();
        let done = json!({"status": "completed"});
        assert!(completion.holds(None, Some(&done)));
        assert!(completion.holds(Some(&active), Some(&done)));
        assert!(!completion.holds(Some(&done), Some(&done)));
        assert!(!completion.holds(Some(&active), Some(&active)));
    }

    #[test]
    fn navigation_functions_and_bounds() {
        let obs = json!({"code": {"coding": [{"code": "a"}, {"code": "b"}]}, "active": true});
        let p = |t: &str| FhirPath::parse(t).unwrap().holds(None, Some(&obs));
        assert!(p("%current.code.coding.code = ('a' | 'b')"));
        assert!(!p("%current.code.coding.code = 'a'"));
        assert!(p("%current.active = true"));
        assert!(p("%current.missing.empty()"));
        assert!(p("%current.code.exists() and %resource.active"));
        assert!(!p("%current.missing = 'x'"));
        assert!(p("%current.missing.exists().not()"));
        assert_eq!(
            FhirPath::parse("%current.where(status='x')").unwrap_err(),
            FhirPathError::Unsupported("where(...)".into())
        );
        assert!(matches!(
            FhirPath::parse("%current.status = "),
            Err(FhirPathError::Syntax(_))
        ));
        assert_eq!(
            FhirPath::parse(&"(".repeat(40)).unwrap_err(),
            FhirPathError::TooDeep
        );
        assert_eq!(
            FhirPath::parse(&"a".repeat(2000)).unwrap_err(),
            FhirPathError::TooLong
        );
        assert!(matches!(
            FhirPath::parse("%context"),
            Err(FhirPathError::Unsupported(_))
        ));
    }
}
