//! Errors of the registry, split by who is at fault, and the one table that maps each to a
//! stable code and an HTTP status (the API's `{code, message, details}`).

use serde_json::Value as Any;

/// What went wrong, by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is wrong: malformed, invalid, or missing what the server requires.
    #[error("{message}")]
    Invalid { code: ErrorCode, message: String, details: Any },
    #[error("{0} not found")]
    NotFound(String),
    /// Not found, but the caller probably meant one of `meant` (a contract's id given without
    /// its major version, or with one that is not stored).
    #[error("{what} not found; did you mean {}?", meant.join(" or "))]
    NotFoundMeant { what: String, meant: Vec<String> },
    /// The input is fine but conflicts with what is stored.
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String, details: Any },
    /// The store failed (connection, disk): not the caller's fault.
    #[error("store: {0}")]
    Store(String),
    /// A building block failed or could not be reached; its error says whether retrying
    /// can help.
    #[error("block `{block}`: {error}")]
    Block { block: String, error: crate::block::BlockError },
    /// The caller is not authenticated, or not allowed.
    #[error("{message}")]
    Denied { code: ErrorCode, message: String },
}

/// Stable error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    MalformedRequest,
    BodyTooLarge,
    InvalidDocument,
    MissingDomain,
    UnsupportedKind,
    NotFound,
    /// The path exists, but not with this method.
    MethodNotAllowed,
    ImmutableVersion,
    StaleGeneration,
    BreakingChange,
    VersionDowngrade,
    OwnerChange,
    ConcurrentChange,
    StoreTooNew,
    StoreFailure,
    /// The data a contract test reads could not be reached.
    DataUnreachable,
    /// A building block failed or could not be reached.
    BlockFailed,
    /// The resource is on its way out: it cannot change until it is gone.
    BeingDeleted,
    /// A write under a lease that another owner has taken since.
    StaleLease,
    /// The server cannot serve yet: its store does not answer or its reconcilers stopped.
    NotReady,
    /// No credentials, or credentials that are unknown, revoked or expired.
    Unauthenticated,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// The request cannot be carried out in the state the thing is in (approving a revoked grant).
    WrongState,
    /// The id is registered to another domain (kept after deletion until a platform admin
    /// releases it).
    IdClaimed,
    /// An output port names a contract of another domain: a product provides only its own
    /// domain's contracts (it consumes others' through input ports and access requests).
    CrossDomainPort,
    /// The resource has another source of truth than the API (a git source): it changes there.
    ManagedElsewhere,
    /// Too many failed authentications from this address: wait before trying again.
    TooManyAttempts,
    /// The contract's server cannot be tested by the server: no block holds it, or its block
    /// says why not (not provisioned, not the contract's port).
    ServerNotTestable,
    /// A test run needed more memory or CPU time than its sandbox allows, and was stopped.
    TestLimit,
    /// A test run did not finish by its deadline, and was stopped.
    TestDeadline,
    /// A `deny` policy refuses the change (or a policy could not be evaluated).
    PolicyDenied,
}

impl ErrorCode {
    /// Every code, in the order of docs/api.md's table (a test holds the two together).
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::MalformedRequest,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::PolicyDenied,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::ImmutableVersion,
        ErrorCode::StaleGeneration,
        ErrorCode::BreakingChange,
        ErrorCode::VersionDowngrade,
        ErrorCode::OwnerChange,
        ErrorCode::ConcurrentChange,
        ErrorCode::IdClaimed,
        ErrorCode::CrossDomainPort,
        ErrorCode::BeingDeleted,
        ErrorCode::ManagedElsewhere,
        ErrorCode::WrongState,
        ErrorCode::StaleLease,
        ErrorCode::BodyTooLarge,
        ErrorCode::InvalidDocument,
        ErrorCode::MissingDomain,
        ErrorCode::UnsupportedKind,
        ErrorCode::ServerNotTestable,
        ErrorCode::TestLimit,
        ErrorCode::TooManyAttempts,
        ErrorCode::TestDeadline,
        ErrorCode::StoreFailure,
        ErrorCode::DataUnreachable,
        ErrorCode::BlockFailed,
        ErrorCode::NotReady,
        ErrorCode::StoreTooNew,
    ];

    /// The HTTP status the API answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::MalformedRequest => 400,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::InvalidDocument
            | ErrorCode::MissingDomain
            | ErrorCode::UnsupportedKind
            | ErrorCode::ServerNotTestable
            | ErrorCode::TestLimit => 422,
            ErrorCode::TestDeadline => 504,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden | ErrorCode::PolicyDenied => 403,
            ErrorCode::ImmutableVersion
            | ErrorCode::StaleGeneration
            | ErrorCode::BreakingChange
            | ErrorCode::VersionDowngrade
            | ErrorCode::OwnerChange
            | ErrorCode::ConcurrentChange
            | ErrorCode::StaleLease
            | ErrorCode::BeingDeleted
            | ErrorCode::ManagedElsewhere
            | ErrorCode::WrongState
            | ErrorCode::IdClaimed
            | ErrorCode::CrossDomainPort => 409,
            ErrorCode::TooManyAttempts => 429,
            ErrorCode::StoreFailure => 500,
            ErrorCode::DataUnreachable | ErrorCode::BlockFailed => 502,
            // A store written by a newer release is refused when the server starts; should a
            // newer replica upgrade the store under a running one, it cannot serve either.
            ErrorCode::NotReady | ErrorCode::StoreTooNew => 503,
        }
    }
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Invalid { code, .. } | Error::Conflict { code, .. } | Error::Denied { code, .. } => *code,
            Error::NotFound(_) | Error::NotFoundMeant { .. } => ErrorCode::NotFound,
            Error::Store(_) => ErrorCode::StoreFailure,
            Error::Block { .. } => ErrorCode::BlockFailed,
        }
    }

    /// Whether the same request may succeed later without any change: the store or a block
    /// did not answer, or another writer came first. The controller retries these with
    /// backoff; every other error waits for a change.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Store(_) => true,
            Error::Block { error, .. } => error.is_transient(),
            Error::Conflict { code, .. } => matches!(code, ErrorCode::ConcurrentChange | ErrorCode::StaleLease),
            Error::Invalid { .. } | Error::NotFound(_) | Error::NotFoundMeant { .. } | Error::Denied { .. } => false,
        }
    }

    pub fn details(&self) -> Any {
        match self {
            Error::Invalid { details, .. } | Error::Conflict { details, .. } => details.clone(),
            Error::NotFoundMeant { meant, .. } => serde_json::json!({ "didYouMean": meant }),
            _ => Any::Null,
        }
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::Conflict { code, message: message.into(), details: Any::Null }
    }

    pub fn denied(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::Denied { code, message: message.into() }
    }

    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Error {
        Error::Invalid { code, message: message.into(), details: Any::Null }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            // Two writers raced for one key: the loser is told to retry, it is not a failure.
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::conflict(
                ErrorCode::ConcurrentChange,
                "another change to the same resource was applied first; retry",
            ),
            _ => Error::Store(e.to_string()),
        }
    }
}
