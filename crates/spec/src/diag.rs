//! Diagnostics: what is wrong, where, and how to fix it.
//!
//! Every problem meshplane can find in a document has one stable code in the [`codes!`]
//! table below, with its default severity and a one-line summary. Tools and users key on
//! the code, so a code is never renamed or reused; a new problem gets a new code.

use serde::Serialize;

use crate::tree::Span;

/// How bad a problem is. Warnings never fail a run unless the caller asks for strictness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

macro_rules! codes {
    ($( $variant:ident = $name:literal, $severity:ident, $summary:literal; )*) => {
        /// The stable code of a problem.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $( $variant, )* }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];

            /// The code as users see it, e.g. `unknown-field`.
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $name, )* }
            }

            /// The severity a problem with this code has unless a rule decides otherwise.
            pub fn default_severity(self) -> Severity {
                match self { $( Code::$variant => Severity::$severity, )* }
            }

            /// One line saying what the code means.
            pub fn summary(self) -> &'static str {
                match self { $( Code::$variant => $summary, )* }
            }
        }
    };
}

codes! {
    // reading the text
    Io = "io", Error, "the file could not be read";
    Syntax = "syntax", Error, "the text is not valid YAML or JSON";
    DuplicateKey = "duplicate-key", Error, "a mapping names the same key twice";
    // the document's shape, as the standard's schema says it
    UnknownKind = "unknown-kind", Error, "the document is not a kind meshplane reads";
    DataContractSpecification = "data-contract-specification", Error, "a Data Contract Specification (datacontract-cli) document, which is not ODCS";
    UnsupportedApiVersion = "unsupported-api-version", Error, "the apiVersion is not one meshplane reads";
    UnknownField = "unknown-field", Error, "a field the standard does not define at this place";
    NotInVersion = "not-in-version", Warning, "a field or value that a later version of the standard defines, used under an earlier apiVersion";
    MissingField = "missing-field", Error, "a field the standard requires is missing";
    WrongType = "wrong-type", Error, "a value has the wrong type";
    InvalidValue = "invalid-value", Error, "a value is not one of the allowed values or does not have the required form";
    Deprecated = "deprecated", Warning, "a field the document's version of the standard deprecates";
    // identity and versions
    NotSemver = "not-semver", Warning, "a version that is not a semantic version";
    DuplicateId = "duplicate-id", Error, "two elements of one document share an id";
    DuplicateDocument = "duplicate-document", Error, "two documents of one run share an id and version";
    // schema
    DuplicateProperty = "duplicate-property", Error, "an object declares the same property name twice";
    DuplicateObject = "duplicate-object", Error, "a contract declares the same object name twice";
    TypeOptionMismatch = "type-option-mismatch", Error, "a logicalTypeOptions entry that does not apply to the logicalType";
    TypeOptionConflict = "type-option-conflict", Error, "logicalTypeOptions that contradict each other";
    MapWithoutDefinition = "map-without-definition", Error, "logicalType map without its map block";
    EnumEmpty = "enum-empty", Error, "an enum without values";
    EnumDuplicate = "enum-duplicate", Error, "an enum that lists a value twice";
    InvalidPattern = "invalid-pattern", Error, "a regular expression that is invalid or not portable across executors";
    // quality rules
    QualityNoOperator = "quality-no-operator", Error, "a quality rule without a comparison operator";
    QualityManyOperators = "quality-many-operators", Error, "a quality rule with more than one comparison operator";
    QualityBadRange = "quality-bad-range", Error, "mustBeBetween or mustNotBeBetween without two ascending numbers";
    QualityOperatorType = "quality-operator-type", Error, "a comparison operator whose value is not a number";
    QualityWrongLevel = "quality-wrong-level", Error, "a metric used on a level where it has no meaning";
    QualityUnknownProperty = "quality-unknown-property", Error, "a quality rule names a property the object does not have";
    QualityInvalidValuesWithoutRule = "quality-invalid-values-without-rule", Error, "invalidValues with nothing that says what is valid";
    QualityPercentRange = "quality-percent-range", Error, "a percent threshold outside 0..100";
    QualitySqlWithoutQuery = "quality-sql-without-query", Error, "a sql rule without a query";
    QualityCustomIncomplete = "quality-custom-incomplete", Error, "a custom rule without engine and implementation";
    QualityUnknownMetric = "quality-unknown-metric", Error, "a library rule with a metric the standard does not define";
    // references
    RelationshipUnknownProperty = "relationship-unknown-property", Error, "a relationship names a property of this contract that does not exist";
    RelationshipExternal = "relationship-external", Warning, "a relationship names an object this contract does not define";
    RelationshipShape = "relationship-shape", Error, "a relationship whose from and to do not match";
    SlaUnknownElement = "sla-unknown-element", Warning, "an SLA element that names no object or property of the contract";
    SlaNotMeasurable = "sla-not-measurable", Error, "an SLA that meshplane test measures (latency, retention) without a duration it can read or an element to measure it on";
    PortUnknownContract = "port-unknown-contract", Warning, "a port's contractId names no contract of this run";
    // policies
    RegoInvalid = "rego-invalid", Error, "a policy's Rego module does not compile";
}

/// One problem at one place.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagnostic {
    #[serde(serialize_with = "code_str")]
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    #[serde(skip)]
    pub span: Span,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// The diagnostic for machines, with its place: `code`, `severity`, `message`, `line`,
    /// `column`, `endLine`, `endColumn` (1-based) and `hint`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.code.as_str(),
            "severity": self.severity,
            "message": self.message,
            "line": self.span.start.line,
            "column": self.span.start.col,
            "endLine": self.span.end.line,
            "endColumn": self.span.end.col,
            "hint": self.hint,
        })
    }
}

fn code_str<S: serde::Serializer>(code: &Code, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(code.as_str())
}

impl Diagnostic {
    /// A problem with the code's default severity.
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { code, severity: code.default_severity(), message: message.into(), span, hint: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn severity(mut self, severity: Severity) -> Diagnostic {
        self.severity = severity;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Orders diagnostics by position, then code, so output is stable.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| (d.span.start, d.code));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "code {name} used twice");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{name}");
            assert!(!code.summary().is_empty());
        }
    }
}
