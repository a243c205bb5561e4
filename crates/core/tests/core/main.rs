//! The store end to end, on SQLite and on PostgreSQL (each test with its own file or
//! database): identity, immutability, generations, breaking changes, all-or-nothing
//! applies, change records, listing, migrations and concurrent writers; the domain services
//! that every entry point calls.

mod backends;
mod cleanup;
mod feed;
mod leases;
mod managers;
mod migrations;
mod registry;
mod services;
mod standing;
