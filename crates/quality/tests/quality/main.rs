//! The quality engine end to end: generated data with known defects in every store, the
//! verdicts and exact counts of every kind of check, and hostile contract SQL.

mod counted;
mod data;
mod hostile;
mod order;
mod pg;
mod s3;
mod samples;
mod stores;
