//! Conditions of the `count` connector: a small subset of OTTL boolean expressions, parsed once at load
//! time (so a typo is a config error with its path) and evaluated against any item through a field
//! accessor.
//!
//! Grammar: `expr := and ("or" and)*`, `and := unary ("and" unary)*`,
//! `unary := "not" unary | "(" expr ")" | IsMatch(field, "regex") | field op literal`, with `op` one of
//! `== != < <= > >=`, fields `attributes["k"]`, `resource.attributes["k"]`, `name`, `kind`,
//! `status.code`, `severity_number`, `severity_text`, `body`, `metric.name`, and literals: strings in
//! double quotes, numbers, `true`, `false`, `nil`, and the OTLP enum names (`STATUS_CODE_ERROR`,
//! `SPAN_KIND_SERVER`, `SEVERITY_NUMBER_ERROR`, ...). A missing field equals only `nil`.

use std::cmp::Ordering;

/// A field of an item a condition reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Attribute(String),
    ResourceAttribute(String),
    Name,
    Kind,
    StatusCode,
    SeverityNumber,
    SeverityText,
    Body,
    MetricName,
}

/// A value read from an item, or written in a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Field, Op, Value),
    IsMatch(Field, regex::Regex),
}

/// A parsed condition.
#[derive(Debug, Clone)]
pub struct Condition(Expr);

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        format!("{:?}", self.0) == format!("{:?}", other.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Op(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '(' => (out.push(Tok::LParen), i += 1).1,
            ')' => (out.push(Tok::RParen), i += 1).1,
            '[' => (out.push(Tok::LBracket), i += 1).1,
            ']' => (out.push(Tok::RBracket), i += 1).1,
            ',' => (out.push(Tok::Comma), i += 1).1,
            '.' => (out.push(Tok::Dot), i += 1).1,
            '"' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match cs.get(i) {
                        None => return Err("a string is not closed with \"".into()),
                        Some('"') => break,
                        Some('\\') => {
                            if let Some(n) = cs.get(i + 1) {
                                v.push(*n);
                            }
                            i += 2;
                        }
                        Some(ch) => {
                            v.push(*ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
                out.push(Tok::Str(v));
            }
            '=' | '!' | '<' | '>' => {
                let two: String = cs[i..(i + 2).min(cs.len())].iter().collect();
                let (op, len) = match two.as_str() {
                    "==" => (Op::Eq, 2),
                    "!=" => (Op::Ne, 2),
                    "<=" => (Op::Le, 2),
                    ">=" => (Op::Ge, 2),
                    _ if c == '<' => (Op::Lt, 1),
                    _ if c == '>' => (Op::Gt, 1),
                    _ => {
                        return Err(format!(
                            "unexpected '{c}' (comparisons are == != < <= > >=)"
                        ))
                    }
                };
                out.push(Tok::Op(op));
                i += len;
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '.' || cs[i] == 'e') {
                    i += 1;
                }
                out.push(Tok::Num(cs[start..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < cs.len() && (cs[i].is_alphanumeric() || cs[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Ident(cs[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            _ => Err(format!("expected {what}")),
        }
    }
    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s == k)
    }
    fn expr(&mut self) -> Result<Expr, String> {
        let mut v = vec![self.and()?];
        while self.keyword("or") {
            self.pos += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::Or(v)
        })
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut v = vec![self.unary()?];
        while self.keyword("and") {
            self.pos += 1;
            v.push(self.unary()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::And(v)
        })
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.expr()?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(e);
        }
        if self.keyword("IsMatch") {
            self.pos += 1;
            self.expect(Tok::LParen, "'(' after IsMatch")?;
            let f = self.field()?;
            self.expect(Tok::Comma, "',' between IsMatch's field and pattern")?;
            let Some(Tok::Str(pattern)) = self.next() else {
                return Err("IsMatch's pattern must be a string in double quotes".into());
            };
            let re = regex::Regex::new(&pattern)
                .map_err(|e| format!("'{pattern}' is not a valid regular expression: {e}"))?;
            self.expect(Tok::RParen, "')' after IsMatch's pattern")?;
            return Ok(Expr::IsMatch(f, re));
        }
        let f = self.field()?;
        let Some(Tok::Op(op)) = self.next() else {
            return Err("expected a comparison (== != < <= > >=) after the field".into());
        };
        let v = self.literal()?;
        Ok(Expr::Cmp(f, op, v))
    }
    fn key(&mut self) -> Result<String, String> {
        self.expect(Tok::LBracket, "'[' after attributes")?;
        let Some(Tok::Str(k)) = self.next() else {
            return Err(
                "an attribute key must be a string in double quotes: attributes[\"key\"]".into(),
            );
        };
        self.expect(Tok::RBracket, "']' after the attribute key")?;
        Ok(k)
    }
    fn field(&mut self) -> Result<Field, String> {
        let Some(Tok::Ident(first)) = self.next() else {
            return Err("expected a field such as attributes[\"key\"], name or status.code".into());
        };
        let mut dotted = first.clone();
        while self.peek() == Some(&Tok::Dot) {
            self.pos += 1;
            let Some(Tok::Ident(part)) = self.next() else {
                return Err(format!("expected a name after '{dotted}.'"));
            };
            dotted = format!("{dotted}.{part}");
        }
        Ok(match dotted.as_str() {
            "attributes" => Field::Attribute(self.key()?),
            "resource.attributes" => Field::ResourceAttribute(self.key()?),
            "name" | "span.name" => Field::Name,
            "kind" | "span.kind" => Field::Kind,
            "status.code" | "span.status.code" => Field::StatusCode,
            "severity_number" => Field::SeverityNumber,
            "severity_text" => Field::SeverityText,
            "body" => Field::Body,
            "metric.name" => Field::MetricName,
            other => {
                return Err(format!(
                    "unknown field '{other}' (known: attributes[\"k\"], resource.attributes[\"k\"], name, \
                     kind, status.code, severity_number, severity_text, body, metric.name)"
                ))
            }
        })
    }
    fn literal(&mut self) -> Result<Value, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Value::Str(s)),
            Some(Tok::Num(n)) => n
                .parse::<i64>()
                .map(Value::Int)
                .or_else(|_| n.parse::<f64>().map(Value::Float))
                .map_err(|_| format!("'{n}' is not a number")),
            Some(Tok::Ident(id)) => match id.as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                "nil" => Ok(Value::Nil),
                other => enum_value(other).map(Value::Int).ok_or_else(|| {
                    format!("'{other}' is not a value (strings need double quotes)")
                }),
            },
            _ => Err("expected a value after the comparison".into()),
        }
    }
}

fn enum_value(name: &str) -> Option<i64> {
    Some(match name {
        "STATUS_CODE_UNSET" | "SPAN_KIND_UNSPECIFIED" => 0,
        "STATUS_CODE_OK" | "SPAN_KIND_INTERNAL" => 1,
        "STATUS_CODE_ERROR" | "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "SEVERITY_NUMBER_TRACE" => 1,
        "SEVERITY_NUMBER_DEBUG" => 5,
        "SEVERITY_NUMBER_INFO" => 9,
        "SEVERITY_NUMBER_WARN" => 13,
        "SEVERITY_NUMBER_ERROR" => 17,
        "SEVERITY_NUMBER_FATAL" => 21,
        _ => return None,
    })
}

impl Condition {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut p = Parser {
            toks: lex(s)?,
            pos: 0,
        };
        let e = p.expr()?;
        if p.pos < p.toks.len() {
            return Err(
                "unexpected text after the condition (join conditions with and / or)".into(),
            );
        }
        Ok(Condition(e))
    }

    /// Whether the item `get` reads from satisfies this condition.
    pub fn matches(&self, get: &dyn Fn(&Field) -> Value) -> bool {
        eval(&self.0, get)
    }
}

fn eval(e: &Expr, get: &dyn Fn(&Field) -> Value) -> bool {
    match e {
        Expr::Or(v) => v.iter().any(|e| eval(e, get)),
        Expr::And(v) => v.iter().all(|e| eval(e, get)),
        Expr::Not(e) => !eval(e, get),
        Expr::IsMatch(f, re) => match get(f) {
            Value::Str(s) => re.is_match(&s),
            _ => false,
        },
        Expr::Cmp(f, op, lit) => {
            let v = get(f);
            let ord = compare(&v, lit);
            match op {
                Op::Eq => ord == Some(Ordering::Equal),
                Op::Ne => ord != Some(Ordering::Equal),
                Op::Lt => ord == Some(Ordering::Less),
                Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                Op::Gt => ord == Some(Ordering::Greater),
                Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
            }
        }
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Nil, Value::Nil) => Some(Ordering::Equal),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(f: &Field) -> Value {
        match f {
            Field::Attribute(k) if k == "http.method" => Value::Str("GET".into()),
            Field::Attribute(k) if k == "http.status_code" => Value::Int(503),
            Field::StatusCode => Value::Int(2),
            Field::Name => Value::Str("GET /users/42".into()),
            _ => Value::Nil,
        }
    }

    #[test]
    fn conditions_evaluate() {
        for (cond, want) in [
            (r#"attributes["http.method"] == "GET""#, true),
            (r#"attributes["http.method"] != "GET""#, false),
            (r#"attributes["http.status_code"] >= 500"#, true),
            (
                r#"attributes["http.status_code"] < 500 or status.code == STATUS_CODE_ERROR"#,
                true,
            ),
            (
                r#"attributes["missing"] == nil and not (name == "x")"#,
                true,
            ),
            (r#"IsMatch(name, "^GET /users/\\d+$")"#, true),
            (r#"attributes["missing"] == "GET""#, false),
        ] {
            assert_eq!(
                Condition::parse(cond).unwrap().matches(&item),
                want,
                "{cond}"
            );
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (cond, fragment) in [
            (r#"attributes[http.method] == "GET""#, "double quotes"),
            (r#"attributes["a"] = 1"#, "comparisons"),
            (r#"color == "red""#, "unknown field 'color'"),
            (r#"IsMatch(name, "(")"#, "regular expression"),
            (r#"name == GET"#, "strings need double quotes"),
        ] {
            let e = Condition::parse(cond).unwrap_err();
            assert!(e.contains(fragment), "{cond}: {e}");
        }
    }
}
