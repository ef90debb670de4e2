//! Walking error chains: the innermost cause, and whether a given error is in the chain.

use std::error::Error;

/// A boxed error that can cross tasks: what bodies, connections and services fail with.
pub(crate) type BoxError = Box<dyn Error + Send + Sync>;

/// The innermost cause of an error: the one that says what really happened.
pub(crate) fn root_cause<'a>(mut e: &'a (dyn Error + 'static)) -> &'a (dyn Error + 'static) {
    while let Some(s) = e.source() {
        e = s;
    }
    e
}

/// Whether any error in the chain of `e` is a `T` (linkerd's `is_caused_by`).
pub(crate) fn is_caused_by<T: Error + 'static>(e: &(dyn Error + 'static)) -> bool {
    is_caused_by_where::<T>(e, |_| true)
}

/// Whether any error in the chain of `e` is a `T` for which `pred` holds.
pub(crate) fn is_caused_by_where<T: Error + 'static>(
    e: &(dyn Error + 'static),
    pred: impl Fn(&T) -> bool,
) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<T>().is_some_and(&pred) {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_cause_is_the_innermost_and_the_chain_is_searched() {
        let io = std::io::Error::other("refused");
        assert!(is_caused_by::<std::io::Error>(&io));
        assert!(!is_caused_by::<std::fmt::Error>(&io));
        assert_eq!(root_cause(&io).to_string(), "refused");
    }
}
