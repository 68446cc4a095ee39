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
