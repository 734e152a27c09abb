//! A small byte cursor shared by the text parsers, producing [`SpaceError::Parse`] errors that
//! say where (byte offset) and what.

use crate::SpaceError;

/// The longest input echoed back inside an error message.
const MAX_ECHO: usize = 120;

/// Builds a parse error at byte `position` of `input`, echoing a shortened copy of the input.
pub(crate) fn parse_error(input: &str, position: usize, message: impl Into<String>) -> SpaceError {
    let echo = if input.len() > MAX_ECHO {
        let mut end = MAX_ECHO;
        while !input.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &input[..end])
    } else {
        input.to_string()
    };
    SpaceError::Parse {
        position,
        message: message.into(),
        input: echo,
    }
}

/// A cursor over the bytes of a string being parsed.
pub(crate) struct Cursor<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(input: &'a str) -> Self {
        Cursor { input, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> SpaceError {
        parse_error(self.input, self.pos, message)
    }

    pub(crate) fn error_at(&self, position: usize, message: impl Into<String>) -> SpaceError {
        parse_error(self.input, position, message)
    }

    /// A short description of what is at the cursor, for error messages.
    pub(crate) fn found(&self) -> String {
        match self.rest().chars().next() {
            None => "end of input".to_string(),
            Some(c) => format!("{c:?}"),
        }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.input.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn skip_ws(&mut self) {
        while let Some(b) = self.peek() {
            if b.is_ascii_whitespace() {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// Consumes `lit` if the input continues with it.
    pub(crate) fn eat(&mut self, lit: &str) -> bool {
        if self.rest().starts_with(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    /// Consumes `lit` or fails with "expected `lit`".
    pub(crate) fn expect(&mut self, lit: &str) -> Result<(), SpaceError> {
        if self.eat(lit) {
            Ok(())
        } else {
            Err(self.error(format!("expected {lit:?}, found {}", self.found())))
        }
    }

    /// Consumes bytes while `pred` holds and returns them (possibly empty).
    pub(crate) fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if pred(b) {
                self.pos += 1;
            } else {
                break;
            }
        }
        &self.input[start..self.pos]
    }

    /// Parses a non-negative decimal integer that fits `usize`.
    pub(crate) fn number(&mut self) -> Result<usize, SpaceError> {
        let start = self.pos;
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return Err(self.error(format!("expected a number, found {}", self.found())));
        }
        digits
            .parse::<usize>()
            .map_err(|_| self.error_at(start, format!("number {digits:?} is too large")))
    }
}

/// Implements `Display` (the op's `as_str`) and `FromStr` (the op of `ALL` with that name; an
/// error naming `$what` and every op otherwise) for an op enum with `ALL` and `as_str`.
macro_rules! op_text {
    ($ty:ty, $what:literal) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::SpaceError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$ty>::ALL
                    .iter()
                    .copied()
                    .find(|op| op.as_str() == s)
                    .ok_or_else(|| {
                        let names: Vec<&str> = <$ty>::ALL.iter().map(|op| op.as_str()).collect();
                        let message = format!(
                            concat!("unknown ", $what, " {:?} (expected one of {})"),
                            s,
                            names.join(", ")
                        );
                        $crate::text::parse_error(s, 0, message)
                    })
            }
        }
    };
}
pub(crate) use op_text;
