//! The train options live in the core (pure, fuzzed); this maps their errors to SQLSTATEs.
pub use recsys_core::options::*;

impl From<OptionError> for crate::error::RecsysError {
    fn from(e: OptionError) -> Self {
        use crate::error::RecsysError;
        match e {
            OptionError::NotObject => RecsysError::OptionsNotObject,
            OptionError::Unknown { key, valid } => RecsysError::UnknownOption { key, valid },
            OptionError::Type { key, expected, got } => RecsysError::OptionType { key, expected, got },
        }
    }
}

#[cfg(test)]
mod unit {
    #[test]
    fn qualified_names() {
        use crate::store::source::valid_qualified_name as v;
        for ok in ["events", "app.events", "\"My Events\"", "db.s.t", "\"a\"\"b\"", "événements", "_t$1"] {
            assert!(v(ok), "{ok}");
        }
        for bad in ["", "interactions; DROP TABLE users", "a.", ".a", "\"\"", "\"open", "a b", "1abc", "a.b.c.d", "t--"] {
            assert!(!v(bad), "{bad}");
        }
    }

}
