//! The one error type of the core; the extension maps each variant to an SQLSTATE.
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    #[error("no interactions to train on")]
    EmptyInput,
    #[error("invalid option \"{name}\": {reason}")]
    InvalidOption { name: String, reason: String },
    #[error("{what} needs about {needed} bytes but the budget is {budget} bytes")]
    OverBudget { needed: u64, budget: u64, what: &'static str },
    #[error("feedback \"explicit\" found no ratings")]
    NoRatings,
    #[error("canceled")]
    Canceled,
}
