//! Producer input: lines read from stdin on a helper thread, and the key/value split of a line.
//!
//! Reading happens on its own thread so the producer can send a partly filled batch when input
//! pauses (an interactive terminal) while still filling whole batches from a fast pipe.

use std::io::{BufRead, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use bytes::Bytes;

use super::super::limits::{LINE_SIZE_BYTES_MAX, PENDING_LINE_COUNT_MAX};

/// One input line without its terminator, or the error that ended input.
pub type Line = Result<Vec<u8>, std::io::Error>;

/// Starts reading stdin on a helper thread; the channel closes at end of input.
pub fn spawn_stdin_reader() -> Receiver<Line> {
    let (sender, receiver) = sync_channel(PENDING_LINE_COUNT_MAX);
    std::thread::spawn(move || read_lines(std::io::stdin().lock(), &sender));
    receiver
}

/// Sends each line of `reader` until end of input, an error, or the receiver going away.
pub fn read_lines(mut reader: impl BufRead, sender: &SyncSender<Line>) {
    loop {
        let line = read_line(&mut reader);
        let stop = !matches!(line, Ok(Some(_)));
        let message = match line {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        if sender.send(message).is_err() || stop {
            return;
        }
    }
}

/// Reads one line, dropping a trailing `\n` or `\r\n`; `None` at end of input.
fn read_line(reader: &mut impl BufRead) -> Result<Option<Vec<u8>>, std::io::Error> {
    let mut line = Vec::new();
    let limit = LINE_SIZE_BYTES_MAX as u64 + 2;
    let read = reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    let terminated = line.last() == Some(&b'\n');
    if terminated {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > LINE_SIZE_BYTES_MAX || (!terminated && read as u64 == limit) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("input line longer than {LINE_SIZE_BYTES_MAX} bytes"),
        ));
    }
    Ok(Some(line))
}

/// Splits a line into (key, value) at the first `separator`; without a separator (or when the
/// line lacks it, as kcat does) the record has no key and the whole line is its value.
pub fn split_line(line: Vec<u8>, separator: Option<&[u8]>) -> (Option<Bytes>, Bytes) {
    let Some(separator) = separator.filter(|s| !s.is_empty()) else {
        return (None, Bytes::from(line));
    };
    let found = line.windows(separator.len()).position(|w| w == separator);
    match found {
        None => (None, Bytes::from(line)),
        Some(at) => {
            let mut all = Bytes::from(line);
            let key = all.split_to(at);
            let value = all.split_off(separator.len());
            (Some(key), value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<Line> {
        let (sender, receiver) = sync_channel(16);
        read_lines(input, &sender);
        drop(sender);
        receiver.into_iter().collect()
    }

    #[test]
    fn lines_lose_their_terminators_and_last_line_needs_none() {
        let got: Vec<Vec<u8>> = lines(b"a\r\nb\n\nc").into_iter().map(Result::unwrap).collect();
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec(), b"".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn an_overlong_line_ends_input_with_an_error() {
        let mut input = vec![b'x'; LINE_SIZE_BYTES_MAX + 5];
        input.push(b'\n');
        input.extend_from_slice(b"after\n");
        let got = lines(&input);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_accepted() {
        let mut input = vec![b'x'; LINE_SIZE_BYTES_MAX];
        input.extend_from_slice(b"\r\n");
        let got = lines(&input);
        assert_eq!(got[0].as_ref().unwrap().len(), LINE_SIZE_BYTES_MAX);
    }

    #[test]
    fn key_separator_splits_at_first_occurrence_only() {
        let (key, value) = split_line(b"user1::a::b".to_vec(), Some(b"::"));
        assert_eq!(key.as_deref(), Some(&b"user1"[..]));
        assert_eq!(&value[..], b"a::b");
        let (key, value) = split_line(b":v".to_vec(), Some(b":"));
        assert_eq!(key.as_deref(), Some(&b""[..]));
        assert_eq!(&value[..], b"v");
    }

    #[test]
    fn lines_without_separator_are_keyless() {
        assert_eq!(split_line(b"plain".to_vec(), Some(b":")), (None, Bytes::from_static(b"plain")));
        assert_eq!(split_line(b"a:b".to_vec(), None), (None, Bytes::from_static(b"a:b")));
    }
}
