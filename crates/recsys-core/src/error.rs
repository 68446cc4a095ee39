//! The one error type of the core; the extension maps each variant to an SQLSTATE.
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    #[error("no interactions to train on")]
    EmptyInput,
    #[error("invalid option \"{name}\": {reason}")]
    InvalidOption { name: String, reason: String },
    #[error("training needs about {needed_mb} MB but the budget is {budget_mb} MB")]
    OverBudget { needed_mb: u64, budget_mb: u64 },
    #[error("canceled")]
    Canceled,
}
