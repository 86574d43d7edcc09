//! Output templates in the style of kcat's `-f`: `%k` key, `%v` value, `%p` partition, `%o`
//! offset, `%t` topic, `%T` timestamp (ms), `%h` headers (`k=v,k=v`), `%%` a percent sign, and
//! the escapes `\n`, `\t`, `\r`, `\\`. A null key or value prints as nothing.

use std::str::FromStr;

use bytes::Bytes;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Key,
    Value,
    Partition,
    Offset,
    Topic,
    Timestamp,
    Headers,
}

/// A parsed output template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// Why a template could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown format directive '%{0}' (known: %k %v %p %o %t %T %h %%)")]
    Directive(char),
    #[error("unknown escape '\\{0}' (known: \\n \\t \\r \\\\)")]
    Escape(char),
    #[error("template ends in the middle of '{0}'")]
    Dangling(char),
}

/// The record fields a template can show.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a Bytes>,
    pub value: Option<&'a Bytes>,
    pub headers: &'a [(&'a str, Option<&'a Bytes>)],
}

impl Template {
    /// The default output: the value and a newline.
    pub fn value_line() -> Self {
        Template { pieces: vec![Piece::Value, Piece::Literal(b"\n".to_vec())] }
    }

    /// The `--print-key` output: key, tab, value, newline.
    pub fn key_value_line() -> Self {
        Template { pieces: vec![Piece::Key, Piece::Literal(b"\t".to_vec()), Piece::Value, Piece::Literal(b"\n".to_vec())] }
    }

    /// Appends the rendering of `record` to `out`.
    pub fn render(&self, record: &RecordView<'_>, out: &mut Vec<u8>) {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(bytes) => out.extend_from_slice(bytes),
                Piece::Key => out.extend_from_slice(record.key.map_or(&[][..], |k| &k[..])),
                Piece::Value => out.extend_from_slice(record.value.map_or(&[][..], |v| &v[..])),
                Piece::Partition => out.extend_from_slice(record.partition.to_string().as_bytes()),
                Piece::Offset => out.extend_from_slice(record.offset.to_string().as_bytes()),
                Piece::Topic => out.extend_from_slice(record.topic.as_bytes()),
                Piece::Timestamp => out.extend_from_slice(record.timestamp_ms.to_string().as_bytes()),
                Piece::Headers => render_headers(record.headers, out),
            }
        }
    }
}

fn render_headers(headers: &[(&str, Option<&Bytes>)], out: &mut Vec<u8>) {
    for (index, (key, value)) in headers.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.map_or(&[][..], |v| &v[..]));
    }
}

impl FromStr for Template {
    type Err = TemplateError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let directive = match c {
                '%' => directive(chars.next().ok_or(TemplateError::Dangling('%'))?)?,
                '\\' => Piece::Literal(escape(chars.next().ok_or(TemplateError::Dangling('\\'))?)?.to_vec()),
                other => Piece::Literal(other.to_string().into_bytes()),
            };
            match directive {
                Piece::Literal(bytes) => literal.extend_from_slice(&bytes),
                field => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(field);
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { pieces })
    }
}

fn directive(c: char) -> Result<Piece, TemplateError> {
    Ok(match c {
        'k' => Piece::Key,
        'v' => Piece::Value,
        'p' => Piece::Partition,
        'o' => Piece::Offset,
        't' => Piece::Topic,
        'T' => Piece::Timestamp,
        'h' => Piece::Headers,
        '%' => Piece::Literal(b"%".to_vec()),
        other => return Err(TemplateError::Directive(other)),
    })
}

fn escape(c: char) -> Result<&'static [u8], TemplateError> {
    Ok(match c {
        'n' => b"\n",
        't' => b"\t",
        'r' => b"\r",
        '\\' => b"\\",
        other => return Err(TemplateError::Escape(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &Template, key: Option<&Bytes>, headers: &[(&str, Option<&Bytes>)]) -> String {
        let value = Bytes::from_static(b"hello");
        let record = RecordView {
            topic: "events",
            partition: 3,
            offset: 42,
            timestamp_ms: 1_700_000_000_123,
            key,
            value: Some(&value),
            headers,
        };
        let mut out = Vec::new();
        template.render(&record, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_directive_and_escape_renders() {
        let key = Bytes::from_static(b"k1");
        let h = Bytes::from_static(b"v");
        let template: Template = "%t/%p@%o %T [%k] %v {%h} 100%%\\t\\\\\\r\\n".parse().unwrap();
        let text = render(&template, Some(&key), &[("a", Some(&h)), ("b", None)]);
        assert_eq!(text, "events/3@42 1700000000123 [k1] hello {a=v,b=} 100%\t\\\r\n");
    }

    #[test]
    fn default_and_print_key_templates_match_their_spelled_out_forms() {
        assert_eq!(Template::value_line(), "%v\\n".parse().unwrap());
        assert_eq!(Template::key_value_line(), "%k\\t%v\\n".parse().unwrap());
        let key = Bytes::from_static(b"user");
        assert_eq!(render(&Template::key_value_line(), Some(&key), &[]), "user\thello\n");
    }

    #[test]
    fn null_key_prints_as_nothing_and_non_ascii_literals_survive() {
        let template: Template = "«%k»%v".parse().unwrap();
        assert_eq!(render(&template, None, &[]), "«»hello");
    }

    #[test]
    fn bad_templates_are_rejected_with_the_offending_character() {
        assert_eq!("%x".parse::<Template>(), Err(TemplateError::Directive('x')));
        assert_eq!("\\q".parse::<Template>(), Err(TemplateError::Escape('q')));
        assert_eq!("abc%".parse::<Template>(), Err(TemplateError::Dangling('%')));
        assert_eq!("abc\\".parse::<Template>(), Err(TemplateError::Dangling('\\')));
    }
}
