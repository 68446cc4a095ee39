//! One place that turns failures into PostgreSQL errors: SQLSTATE, a lowercase message without
//! a trailing period, a detail with the specifics and a hint with the fix.
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use recsys_core::CoreError;

#[derive(Debug)]
pub enum RecsysError {
    Core(CoreError),
    NotTrained,
    /// No deployed version of a named model (other than "default").
    UnknownModel(String),
    InvalidArgument {
        message: String,
        hint: String,
    },
    OptionsNotObject,
    UnknownOption {
        key: String,
        valid: Vec<String>,
    },
    OptionType {
        key: String,
        expected: String,
        got: String,
    },
    UndefinedTable {
        role: &'static str,
        name: String,
    },
    UndefinedColumn {
        table: String,
        column: String,
        option: String,
    },
    WrongColumnType {
        table: String,
        column: String,
        found: String,
        expected: &'static str,
    },
    UnknownPost(i64),
    NoContentModel,
    MissingColumnFor {
        what: &'static str,
        role: &'static str,
        table: String,
    },
    OverBudget {
        needed: u64,
        budget: u64,
        what: &'static str,
    },
    /// A write on a hot standby.
    ReadOnly {
        what: &'static str,
    },
    /// A write inside a READ ONLY transaction.
    ReadOnlyTransaction {
        what: &'static str,
    },
    Corrupt(String),
    Spi(String),
    /// A model part that could not be serialised (a bug, never user input).
    Encode(String),
    /// A recsys_search query above recsys.max_query_bytes.
    QueryTooLong {
        bytes: usize,
        max: usize,
    },
}

pub type Result<T> = std::result::Result<T, RecsysError>;

impl From<CoreError> for RecsysError {
    fn from(e: CoreError) -> Self {
        RecsysError::Core(e)
    }
}

impl From<pgrx::spi::Error> for RecsysError {
    fn from(e: pgrx::spi::Error) -> Self {
        RecsysError::Spi(e.to_string())
    }
}

fn mb(bytes: u64) -> u64 {
    bytes.div_ceil(1024 * 1024)
}

impl RecsysError {
    // One function on purpose (issue 14): a flat match with one arm per error, so every
    // SQLSTATE, message, detail and hint can be read and compared in one place.
    fn parts(&self) -> (PgSqlErrorCode, String, Option<String>, Option<String>) {
        use PgSqlErrorCode::*;
        match self {
            RecsysError::Core(CoreError::EmptyInput) => (
                ERRCODE_NO_DATA_FOUND,
                "no interactions to train on".into(),
                Some("the interactions table has no rows with a positive weight".into()),
                Some("insert interactions, or map another table with {\"interactions\": {\"table\": ...}}".into()),
            ),
            RecsysError::Core(CoreError::InvalidOption { name, reason }) => (
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid value for option \"{name}\""),
                Some(reason.clone()),
                Some("see the option table in the pg_recsys README".into()),
            ),
            RecsysError::Core(CoreError::OverBudget { needed, budget, what }) => RecsysError::OverBudget { needed: *needed, budget: *budget, what }.parts(),
            RecsysError::Core(CoreError::NoRatings) => (
                ERRCODE_NO_DATA_FOUND,
                "feedback \"explicit\" found no ratings".into(),
                None,
                Some("ratings are interactions with a non-NULL value; see the \"rating_kind\" option".into()),
            ),
            RecsysError::Core(CoreError::Canceled) => (ERRCODE_QUERY_CANCELED, "canceling statement".into(), None, None),
            RecsysError::ReadOnly { what } => (
                ERRCODE_READ_ONLY_SQL_TRANSACTION,
                format!("{what} cannot run on a hot standby"),
                Some("the server is in recovery: it replays the primary's models and serves them".into()),
                Some("train on the primary; standbys serve the model once it is replayed".into()),
            ),
            RecsysError::NotTrained => (
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "no trained model".into(),
                None,
                Some("run SELECT recsys_train()".into()),
            ),
            RecsysError::UnknownModel(name) => (
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("no deployed model named \"{name}\""),
                None,
                Some(format!("train it with SELECT recsys_train('{{\"model\": \"{name}\"}}'), or deploy a version with recsys_deploy('{name}'); SELECT * FROM recsys_models lists the models")),
            ),
            RecsysError::InvalidArgument { message, hint } => {
                (ERRCODE_INVALID_PARAMETER_VALUE, message.clone(), None, Some(hint.clone()))
            }
            RecsysError::OptionsNotObject => (
                ERRCODE_INVALID_PARAMETER_VALUE,
                "options must be a JSON object".into(),
                None,
                Some("pass for example '{\"factors\": 64}'".into()),
            ),
            RecsysError::UnknownOption { key, valid } => (
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("unknown option \"{key}\""),
                None,
                Some(format!("valid options are: {}", valid.join(", "))),
            ),
            RecsysError::OptionType { key, expected, got } => (
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("option \"{key}\" must be {expected}"),
                Some(format!("got {got}")),
                None,
            ),
            RecsysError::UndefinedTable { role, name } => (
                ERRCODE_UNDEFINED_TABLE,
                format!("relation \"{name}\" does not exist"),
                Some(format!("pg_recsys reads {role} from it")),
                Some(format!("create it, or map another table with {{\"{role}\": {{\"table\": \"...\"}}}}")),
            ),
            RecsysError::UndefinedColumn { table, column, option } => (
                ERRCODE_UNDEFINED_COLUMN,
                format!("column \"{column}\" of relation {table} does not exist"),
                None,
                Some(format!("map the column with the option {option}")),
            ),
            RecsysError::WrongColumnType { table, column, found, expected } => (
                ERRCODE_DATATYPE_MISMATCH,
                format!("column \"{column}\" of relation {table} has type {found}"),
                Some(format!("expected {expected}")),
                None,
            ),
            RecsysError::UnknownPost(id) => (
                ERRCODE_NO_DATA_FOUND,
                format!("post {id} is not in the trained model"),
                Some("the model knows posts that had interactions or were in the posts table when it was trained".into()),
                Some("retrain with SELECT recsys_train() to include newer posts".into()),
            ),
            RecsysError::NoContentModel => (
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "the trained model has no content (TF-IDF) part".into(),
                Some("recsys_train builds it from the posts table when one exists".into()),
                Some("create a posts table, or map one with {\"posts\": {\"table\": ...}}, and run SELECT recsys_train()".into()),
            ),
            RecsysError::MissingColumnFor { what, role, table } => (
                ERRCODE_UNDEFINED_COLUMN,
                format!("{what} needs the \"{role}\" column of {table}"),
                None,
                Some(format!("map it in the train options, e.g. {{\"{}\": {{\"{role}\": \"...\"}}}}", if table.contains("post") { "posts" } else { "interactions" })),
            ),
            RecsysError::OverBudget { needed, budget, what } => (
                ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("{what} needs more memory than maintenance_work_mem allows"),
                Some(format!("estimated {} MB, budget {} MB", mb(*needed), mb(*budget))),
                Some(format!("SET maintenance_work_mem = '{}MB' (or more)", mb(*needed) + 1)),
            ),
            RecsysError::Corrupt(what) => (
                ERRCODE_DATA_CORRUPTED,
                "stored model is damaged".into(),
                Some(what.clone()),
                Some("retrain with SELECT recsys_train()".into()),
            ),
            RecsysError::ReadOnlyTransaction { what } => (
                ERRCODE_READ_ONLY_SQL_TRANSACTION,
                format!("{what} cannot run in a read-only transaction"),
                Some("training writes the new model in the caller's transaction".into()),
                Some("run it outside BEGIN READ ONLY (or SET transaction_read_only = off)".into()),
            ),
            RecsysError::QueryTooLong { bytes, max } => (
                ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("search query of {bytes} bytes is longer than recsys.max_query_bytes ({max})"),
                None,
                Some("shorten the query, or SET recsys.max_query_bytes to allow longer ones".into()),
            ),
            RecsysError::Spi(msg) => (ERRCODE_INTERNAL_ERROR, format!("pg_recsys internal query failed: {msg}"), None, None),
            RecsysError::Encode(msg) => (ERRCODE_INTERNAL_ERROR, format!("pg_recsys could not encode a model part: {msg}"), None, None),
        }
    }

    /// Raises the error as a PostgreSQL ERROR; never returns.
    pub fn raise(self) -> ! {
        let (code, message, detail, hint) = self.parts();
        let mut r = ErrorReport::new(code, message, "pg_recsys");
        if let Some(d) = detail {
            r = r.set_detail(d);
        }
        if let Some(h) = hint {
            r = r.set_hint(h);
        }
        r.report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }
}

/// `result.or_raise()` in the API functions.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T> {
    fn or_raise(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.raise(),
        }
    }
}
