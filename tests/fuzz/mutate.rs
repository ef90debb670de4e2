//! Byte-level mutations of seed files, for the targets that read raw bodies: bytes
//! flipped, inserted or deleted, the body cut short, and tokens of the target's own
//! syntax spliced in.

use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

/// One edit of a body; positions are taken modulo the body's length.
#[derive(Debug, Clone)]
pub enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Token(usize, usize),
    Delete(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => any::<(usize, u8)>().prop_map(|(a, b)| Edit::Flip(a, b)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..4))
            .prop_map(|(a, b)| Edit::Insert(a, b)),
        3 => any::<(usize, usize)>().prop_map(|(a, t)| Edit::Token(a, t)),
        1 => any::<(usize, usize)>().prop_map(|(a, n)| Edit::Delete(a, n % 8 + 1)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// `body` with `edits` applied in turn, `tokens` being what [`Edit::Token`] splices in.
pub fn apply(mut body: Vec<u8>, edits: &[Edit], tokens: &[&str]) -> Vec<u8> {
    let at = |a: &usize, len: usize| a % (len + 1);
    for e in edits {
        match e {
            Edit::Flip(a, b) if !body.is_empty() => {
                let i = a % body.len();
                body[i] = *b;
            }
            Edit::Flip(..) => {}
            Edit::Insert(a, b) => {
                let i = at(a, body.len());
                body.splice(i..i, b.iter().copied());
            }
            Edit::Token(a, t) if !tokens.is_empty() => {
                let i = at(a, body.len());
                body.splice(i..i, tokens[t % tokens.len()].bytes());
            }
            Edit::Token(..) => {}
            Edit::Delete(a, n) => {
                let i = at(a, body.len());
                let end = (i + n).min(body.len());
                body.drain(i..end);
            }
            Edit::Truncate(a) => {
                let i = at(a, body.len());
                body.truncate(i);
            }
        }
    }
    body
}

/// One of `seeds` with up to five edits.
pub fn mutated(
    seeds: &'static [(String, Vec<u8>)],
    tokens: &'static [&'static str],
) -> BoxedStrategy<Vec<u8>> {
    (
        any::<prop::sample::Index>(),
        prop::collection::vec(edit(), 0..6),
    )
        .prop_map(move |(i, edits)| apply(i.get(seeds).1.clone(), &edits, tokens))
        .boxed()
}
