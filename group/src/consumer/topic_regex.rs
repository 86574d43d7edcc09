//! A small regular-expression engine for `subscribed_topic_regex` (ConsumerGroupHeartbeat v1).
//!
//! Kafka evaluates these with RE2J and full-match semantics (`matcher(topic).matches()`). The
//! `regex` crate is in the workspace lock file but not a dependency of this crate, and this module
//! may not change the crate manifest, so it carries its own engine for the subset topic patterns
//! use in practice: literals, `.`, classes `[a-z0-9._-]` / `[^...]`, escapes (`\.`, `\d`, `\w`,
//! `\s`, ...), groups `( )` and `(?: )`, alternation `|`, and the quantifiers `* + ? {n} {n,}
//! {n,m}`; a leading `^` and trailing `$` are accepted and ignored since matching is anchored
//! anyway. Anything else (backreferences, lookaround, flags) is rejected so the heartbeat answers
//! INVALID_REGULAR_EXPRESSION instead of matching something different from Kafka.
//!
//! Matching runs a Thompson NFA over the topic name: time is linear in the name length times the
//! program size, with no backtracking blow-up.

/// Longest pattern accepted.
pub const PATTERN_LENGTH_MAX: usize = 1024;
/// Largest compiled program (bounded repetition is expanded, so `a{1000}` would be large).
pub const PROGRAM_LENGTH_MAX: usize = 4096;
/// Largest bound accepted in `{n,m}`.
pub const REPEAT_COUNT_MAX: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Empty,
    Class(Class),
    Concat(Vec<Node>),
    Alternate(Vec<Node>),
    Repeat { node: Box<Node>, min: u32, max: Option<u32> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn single(c: char) -> Class {
        Class { negated: false, ranges: vec![(c, c)] }
    }

    fn any() -> Class {
        Class { negated: true, ranges: vec![('\n', '\n')] }
    }

    fn matches(&self, c: char) -> bool {
        self.ranges.iter().any(|(low, high)| *low <= c && c <= *high) != self.negated
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Inst {
    Class(Class),
    Split(usize, usize),
    Jump(usize),
    Match,
}

/// A compiled topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRegex {
    program: Vec<Inst>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression: {0}")]
pub struct RegexError(pub &'static str);

impl TopicRegex {
    pub fn new(pattern: &str) -> Result<TopicRegex, RegexError> {
        if pattern.len() > PATTERN_LENGTH_MAX {
            return Err(RegexError("pattern too long"));
        }
        let mut chars: Vec<char> = pattern.chars().collect();
        if chars.first() == Some(&'^') {
            chars.remove(0);
        }
        if chars.last() == Some(&'$') && !(chars.len() >= 2 && chars[chars.len() - 2] == '\\') {
            chars.pop();
        }
        let mut parser = Parser { chars: &chars, position: 0 };
        let node = parser.alternation()?;
        if parser.position != chars.len() {
            return Err(RegexError("unbalanced parenthesis"));
        }
        let mut program = Vec::new();
        compile(&node, &mut program)?;
        program.push(Inst::Match);
        Ok(TopicRegex { program })
    }

    /// Whether the whole of `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        let mut current = vec![false; self.program.len()];
        self.add_thread(&mut current, 0);
        for c in text.chars() {
            let mut next = vec![false; self.program.len()];
            let mut alive = false;
            for (pc, active) in current.iter().enumerate() {
                if let (true, Inst::Class(class)) = (*active, &self.program[pc]) {
                    if class.matches(c) {
                        self.add_thread(&mut next, pc + 1);
                        alive = true;
                    }
                }
            }
            if !alive {
                return false;
            }
            current = next;
        }
        current.iter().zip(&self.program).any(|(active, inst)| *active && *inst == Inst::Match)
    }

    fn add_thread(&self, set: &mut [bool], start: usize) {
        let mut stack = vec![start];
        while let Some(pc) = stack.pop() {
            if set[pc] {
                continue;
            }
            set[pc] = true;
            match self.program[pc] {
                Inst::Split(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                Inst::Jump(target) => stack.push(target),
                Inst::Class(_) | Inst::Match => {}
            }
        }
    }
}

struct Parser<'a> {
    chars: &'a [char],
    position: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.position += usize::from(c.is_some());
        c
    }

    fn alternation(&mut self) -> Result<Node, RegexError> {
        let mut branches = vec![self.concatenation()?];
        while self.peek() == Some('|') {
            self.position += 1;
            branches.push(self.concatenation()?);
        }
        Ok(if branches.len() == 1 { branches.pop().expect("one branch") } else { Node::Alternate(branches) })
    }

    fn concatenation(&mut self) -> Result<Node, RegexError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(if items.is_empty() { Node::Empty } else { Node::Concat(items) })
    }

    fn quantified(&mut self, mut node: Node) -> Result<Node, RegexError> {
        loop {
            let (min, max) = match self.peek() {
                Some('*') => (0, None),
                Some('+') => (1, None),
                Some('?') => (0, Some(1)),
                Some('{') => {
                    self.position += 1;
                    let bounds = self.bounds()?;
                    self.position -= 1;
                    bounds
                }
                _ => return Ok(node),
            };
            self.position += 1;
            if matches!(self.peek(), Some('?') | Some('+')) {
                return Err(RegexError("lazy and possessive quantifiers are not supported"));
            }
            node = Node::Repeat { node: Box::new(node), min, max };
        }
    }

    /// Parses `n}`, `n,}` or `n,m}` after a `{`; leaves the position after the `}`.
    fn bounds(&mut self) -> Result<(u32, Option<u32>), RegexError> {
        let min = self.number()?.ok_or(RegexError("repetition without a count"))?;
        let max = if self.peek() == Some(',') {
            self.position += 1;
            self.number()?
        } else {
            Some(min)
        };
        if self.next() != Some('}') {
            return Err(RegexError("unterminated repetition"));
        }
        if max.is_some_and(|max| max < min) {
            return Err(RegexError("repetition bounds out of order"));
        }
        Ok((min, max))
    }

    fn number(&mut self) -> Result<Option<u32>, RegexError> {
        let start = self.position;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.position += 1;
        }
        if start == self.position {
            return Ok(None);
        }
        let text: String = self.chars[start..self.position].iter().collect();
        let value: u32 = text.parse().map_err(|_| RegexError("repetition count"))?;
        if value > REPEAT_COUNT_MAX {
            return Err(RegexError("repetition count too large"));
        }
        Ok(Some(value))
    }

    fn atom(&mut self) -> Result<Node, RegexError> {
        match self.next().ok_or(RegexError("unexpected end"))? {
            '(' => {
                if self.peek() == Some('?') {
                    self.position += 1;
                    if self.next() != Some(':') {
                        return Err(RegexError("group flags and lookaround are not supported"));
                    }
                }
                let inner = self.alternation()?;
                if self.next() != Some(')') {
                    return Err(RegexError("unbalanced parenthesis"));
                }
                Ok(inner)
            }
            '[' => self.class().map(Node::Class),
            '.' => Ok(Node::Class(Class::any())),
            '\\' => self.escape().map(Node::Class),
            '*' | '+' | '?' | '{' => Err(RegexError("quantifier without an operand")),
            '^' | '$' => Err(RegexError("anchors are only supported at the ends")),
            c => Ok(Node::Class(Class::single(c))),
        }
    }

    fn escape(&mut self) -> Result<Class, RegexError> {
        let c = self.next().ok_or(RegexError("trailing backslash"))?;
        let class = |negated, ranges: &[(char, char)]| Class { negated, ranges: ranges.to_vec() };
        const DIGIT: &[(char, char)] = &[('0', '9')];
        const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
        const SPACE: &[(char, char)] = &[('\t', '\r'), (' ', ' ')];
        match c {
            'd' => Ok(class(false, DIGIT)),
            'D' => Ok(class(true, DIGIT)),
            'w' => Ok(class(false, WORD)),
            'W' => Ok(class(true, WORD)),
            's' => Ok(class(false, SPACE)),
            'S' => Ok(class(true, SPACE)),
            'n' => Ok(Class::single('\n')),
            't' => Ok(Class::single('\t')),
            c if c.is_ascii_alphanumeric() => Err(RegexError("unsupported escape")),
            c => Ok(Class::single(c)),
        }
    }

    fn class(&mut self) -> Result<Class, RegexError> {
        let mut class = Class { negated: false, ranges: Vec::new() };
        if self.peek() == Some('^') {
            self.position += 1;
            class.negated = true;
        }
        let mut first = true;
        loop {
            let c = self.next().ok_or(RegexError("unterminated class"))?;
            if c == ']' && !first {
                break;
            }
            first = false;
            let low = if c == '\\' {
                let escaped = self.escape()?;
                if escaped.negated || escaped.ranges.len() != 1 || escaped.ranges[0].0 != escaped.ranges[0].1 {
                    if escaped.negated {
                        return Err(RegexError("negated escape inside a class"));
                    }
                    class.ranges.extend(escaped.ranges);
                    continue;
                }
                escaped.ranges[0].0
            } else {
                c
            };
            if self.peek() == Some('-') && self.chars.get(self.position + 1).is_some_and(|next| *next != ']') {
                self.position += 1;
                let high = self.next().ok_or(RegexError("unterminated class"))?;
                if high < low {
                    return Err(RegexError("class range out of order"));
                }
                class.ranges.push((low, high));
            } else {
                class.ranges.push((low, low));
            }
        }
        Ok(class)
    }
}

fn compile(node: &Node, program: &mut Vec<Inst>) -> Result<(), RegexError> {
    if program.len() > PROGRAM_LENGTH_MAX {
        return Err(RegexError("pattern too complex"));
    }
    match node {
        Node::Empty => {}
        Node::Class(class) => program.push(Inst::Class(class.clone())),
        Node::Concat(items) => {
            for item in items {
                compile(item, program)?;
            }
        }
        Node::Alternate(branches) => {
            let mut jumps = Vec::new();
            for (index, branch) in branches.iter().enumerate() {
                if index + 1 < branches.len() {
                    let split = program.len();
                    program.push(Inst::Split(split + 1, 0));
                    compile(branch, program)?;
                    jumps.push(program.len());
                    program.push(Inst::Jump(0));
                    let next = program.len();
                    program[split] = Inst::Split(split + 1, next);
                } else {
                    compile(branch, program)?;
                }
            }
            let end = program.len();
            for jump in jumps {
                program[jump] = Inst::Jump(end);
            }
        }
        Node::Repeat { node, min, max } => {
            for _ in 0..*min {
                compile(node, program)?;
            }
            match max {
                None => {
                    let split = program.len();
                    program.push(Inst::Split(split + 1, 0));
                    compile(node, program)?;
                    program.push(Inst::Jump(split));
                    let end = program.len();
                    program[split] = Inst::Split(split + 1, end);
                }
                Some(max) => {
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(program.len());
                        program.push(Inst::Split(0, 0));
                        compile(node, program)?;
                    }
                    let end = program.len();
                    for split in splits {
                        program[split] = Inst::Split(split + 1, end);
                    }
                }
            }
        }
    }
    if program.len() > PROGRAM_LENGTH_MAX {
        return Err(RegexError("pattern too complex"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::TopicRegex;

    fn matches(pattern: &str, text: &str) -> bool {
        TopicRegex::new(pattern).unwrap().is_match(text)
    }

    #[test]
    fn full_match_semantics_like_re2j_matches() {
        assert!(matches("orders.*", "orders-eu"));
        assert!(!matches("orders", "orders-eu"));
        assert!(matches("^orders-(eu|us)$", "orders-us"));
        assert!(!matches("orders-(eu|us)", "orders-apac"));
        assert!(matches("[a-c]+\\.[0-9]{2}", "abc.42"));
        assert!(!matches("[a-c]+\\.[0-9]{2}", "abc.4"));
        assert!(matches("[^_].*", "topic"));
        assert!(!matches("[^_].*", "__consumer_offsets"));
        assert!(matches("a(b|)c?", "a"));
        assert!(matches("(a*)*b", "aaaab"));
        assert!(matches("\\w+-\\d{1,3}", "t_1-007"));
    }

    #[test]
    fn unsupported_or_malformed_patterns_are_rejected() {
        for pattern in ["(abc", "abc)", "*a", "a{3,1}", "(?=a)", "a{1000}", "[abc", "\\k", "a*?"] {
            assert!(TopicRegex::new(pattern).is_err(), "{pattern} should be rejected");
        }
    }
}
