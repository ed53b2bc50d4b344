//! An error and its causes as one line, each cause said once.
//!
//! Two habits meet in one chain: our `thiserror` variants put their cause in their own message
//! (`cannot read config X: <io error>`, so a log line of `{e}` alone is complete), and they also
//! return it from `source()`; libraries such as libloading hide the loader's reason one level
//! down instead. Walking `source()` and appending every level therefore printed the same cause
//! twice ("No such file or directory (os error 2): No such file or directory (os error 2)"). The
//! CLI edge, the log lines of library failures and the backend search all print through
//! [`each_once`], which appends a level only when its text is not already in the line.

use std::error::Error;

/// `e` followed by each cause in its `source()` chain whose text the line does not hold yet.
pub fn each_once(e: &dyn Error) -> String {
    let mut texts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        texts.push(c.to_string());
        cur = c.source();
    }
    join(texts)
}

/// The same for texts already taken from a chain (anyhow's `chain()` at the CLI edge).
pub fn join(texts: impl IntoIterator<Item = String>) -> String {
    let mut s = String::new();
    for t in texts {
        if t.is_empty() || s.contains(&t) {
            continue;
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&t);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// A wrapper that prints its cause and returns it (our habit).
    #[derive(Debug, thiserror::Error)]
    #[error("cannot open {what}: {source}")]
    struct Prints {
        what: &'static str,
        source: io::Error,
    }

    /// A wrapper that hides its cause one level down (libloading's habit).
    #[derive(Debug, thiserror::Error)]
    #[error("library load failed")]
    struct Hides(#[source] io::Error);

    fn enoent() -> io::Error {
        io::Error::from_raw_os_error(2)
    }

    #[test]
    fn every_cause_is_said_once() {
        let printed = Prints {
            what: "x",
            source: enoent(),
        };
        let line = each_once(&printed);
        assert_eq!(
            line.matches("No such file or directory").count(),
            1,
            "{line}"
        );
        let hidden = each_once(&Hides(enoent()));
        assert_eq!(
            hidden,
            "library load failed: No such file or directory (os error 2)"
        );
        let nested = Prints {
            what: "y",
            source: io::Error::other(Prints {
                what: "z",
                source: enoent(),
            }),
        };
        let line = each_once(&nested);
        assert_eq!(line.matches("os error 2").count(), 1, "{line}");
        assert_eq!(line.matches("cannot open z").count(), 1, "{line}");
    }
}
